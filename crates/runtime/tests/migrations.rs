//! Migrations on the real binary: the install/upgrade decision per service, and migrations
//! that take long (the runtime stays responsive, stops promptly, and leaves no process).

use crate::common;

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

/// Waits (bounded) for the pid files `name.pid` and `name-child.pid`.
fn wait_pids(fixture: &Fixture, name: &str) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let (Some(a), Some(b)) = (
            fixture.pid_file(name),
            fixture.pid_file(&format!("{name}-child")),
        ) {
            return vec![a, b];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {name} pids: {}",
            fixture.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn remove_pids(fixture: &Fixture, name: &str) {
    for file in [format!("{name}.pid"), format!("{name}-child.pid")] {
        let _ = std::fs::remove_file(fixture.app_data.join(file));
    }
}

#[test]
fn a_hanging_migration_leaves_the_runtime_responsive_stoppable_and_leaves_no_process() {
    let manifest = |timeout_ms: Option<u64>| {
        let mut db = testsvc_service("db", &["sleeper"], "never logged");
        db["migrations"] = serde_json::json!([
            {"version": "1", "command": ["./testsvc", "hang", "mig"]}
        ]);
        if let Some(ms) = timeout_ms {
            db["migrations"][0]["timeout_ms"] = ms.into();
        }
        let other = testsvc_service("other", &["worker"], "Worker started successfully");
        small_manifest("1.0.0", serde_json::json!([db, other]))
    };
    let fixture = Fixture::new("mig-hang", &manifest(None));

    // While the migration runs, the control API answers and independent services start.
    let mut runtime = fixture.start();
    let pids = wait_pids(&fixture, "mig");
    wait_state(&runtime, &fixture, "other", "ready");
    let status = runtime.json("/status");
    let db = &status["services"][0];
    assert_eq!(db["state"], "starting", "{status}");
    assert_eq!(db["detail"], "running migration 1", "{status}");
    // SIGTERM stops the runtime promptly (the migration is stopped with it).
    // SAFETY: plain syscall.
    unsafe { libc::kill(runtime.child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        runtime.wait_exit(Duration::from_secs(15)),
        0,
        "{}",
        fixture.stderr()
    );
    assert_eq!(wait_gone(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    drop(runtime);

    // SIGKILL to the runtime leaves no migration process either.
    remove_pids(&fixture, "mig");
    let mut runtime = fixture.start();
    let pids = wait_pids(&fixture, "mig");
    runtime.child.kill().unwrap();
    runtime.child.wait().unwrap();
    assert_eq!(wait_gone(&pids, Duration::from_secs(15)), Vec::<i32>::new());
    drop(runtime);

    // A migration over its `timeout_ms` is stopped, tree and all, and its service fails.
    remove_pids(&fixture, "mig");
    fixture.write_manifest(&manifest(Some(300)));
    let mut runtime = fixture.start();
    let pids = wait_pids(&fixture, "mig");
    let status = wait_state(&runtime, &fixture, "db", "failed");
    let detail = status["services"][0]["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("migration 1 timed out after 300 ms"),
        "{detail}"
    );
    assert_eq!(wait_gone(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    runtime.wait_ready(&fixture);
    stop(&mut runtime);
}

#[test]
fn a_hanging_command_check_is_killed_with_its_children() {
    let mut svc = testsvc_service("svc", &["worker"], "Worker started successfully");
    svc["health"] = serde_json::json!({
        "type": "command", "command": ["./testsvc", "hang", "check"],
        "interval_ms": 50, "timeout_ms": 200, "retries": 1000
    });
    let fixture = Fixture::new(
        "check-hang",
        &small_manifest("1.0.0", serde_json::json!([svc])),
    );
    let mut runtime = fixture.start();
    let pids = wait_pids(&fixture, "check");
    assert_eq!(wait_gone(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    stop(&mut runtime);
}
