//! Migrations on the real binary: the install/upgrade decision per service, and migrations
//! that take long (the runtime stays responsive, stops promptly, and leaves no process).

mod common;

use common::*;
use std::time::Duration;

fn migrations_log(fixture: &Fixture) -> String {
    std::fs::read_to_string(fixture.app_data.join("migrations.log")).unwrap_or_default()
}

fn stop(runtime: &mut Runtime) {
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
}

#[test]
fn upgrades_run_although_another_service_never_got_to_its_migrations() {
    let manifest = |version: &str| {
        let mut db = testsvc_service("db", &["worker"], "Worker started successfully");
        db["migrations"] = serde_json::json!([
            {"version": "1", "command": ["./testsvc", "migrate", "first"], "run_on": "first_install"},
            {"version": "2", "command": ["./testsvc", "migrate", "always-2"]},
            {"version": "3", "command": ["./testsvc", "migrate", "upgrade-3"], "run_on": "upgrade"}
        ]);
        if version != "1.0.0" {
            // New in 2.0: for an existing install this is an upgrade, so it never runs.
            db["migrations"].as_array_mut().unwrap().push(serde_json::json!(
                {"version": "4", "command": ["./testsvc", "migrate", "first-4"], "run_on": "first_install"}
            ));
        }
        // No binary for this platform: it fails before its migrations, on every start.
        let mut broken = testsvc_service("broken", &["worker"], "never");
        broken["binaries"] = serde_json::json!({"windows-x64": {"path": "bin/testsvc.exe"}});
        broken["migrations"] =
            serde_json::json!([{"version": "1", "command": ["./testsvc", "migrate", "broken"]}]);
        small_manifest(version, serde_json::json!([broken, db]))
    };
    let fixture = Fixture::new("mig-per-service", &manifest("1.0.0"));
    for (version, expected) in [
        ("1.0.0", "first\nalways-2\n"),
        ("1.0.0", "first\nalways-2\n"),
        ("2.0.0", "first\nalways-2\nupgrade-3\n"),
        ("2.0.0", "first\nalways-2\nupgrade-3\n"),
    ] {
        fixture.write_manifest(&manifest(version));
        let mut runtime = fixture.start();
        wait_state(&runtime, &fixture, "broken", "failed");
        runtime.wait_ready(&fixture);
        assert_eq!(migrations_log(&fixture), expected, "{version}");
        stop(&mut runtime);
    }
}
