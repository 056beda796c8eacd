//! The runtime's command line: the corpus manifests load and dry-run; bad bundles give errors
//! naming the file, the field and the problem; a failing critical service stops the app.

use crate::common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn corpus() -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/vrooli/bundle"
    ));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("XBUNDLE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!(
            "conformance corpus missing at {} (XBUNDLE_REQUIRE_TOOLS=1)",
            dir.display()
        );
    }
    eprintln!("skipped: conformance corpus not found at {}", dir.display());
    None
}

fn dry_run(bundle: &std::path::Path) -> std::process::Output {
    Command::new(RUNTIME)
        .arg("--bundle")
        .arg(bundle)
        .args(["--app-data", "/nonexistent/app-data", "--dry-run"])
        .output()
        .unwrap()
}

#[test]
fn corpus_manifests_load_and_dry_run() {
    let Some(dir) = corpus() else { return };
    for name in [
        "desktop-happy.json",
        "desktop-playwright.json",
        "desktop-with-build.json",
    ] {
        let bundle =
            std::env::temp_dir().join(format!("xbundle-rt-dry-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::copy(dir.join(name), bundle.join("bundle.json")).unwrap();
        let output = dry_run(&bundle);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        for service in manifest["services"].as_array().unwrap() {
            assert!(
                stdout.contains(service["id"].as_str().unwrap()),
                "{name}: {stdout}"
            );
        }
        assert!(stdout.contains("start order"), "{stdout}");
        // Dependencies come first: api before ui-server / ui.
        let api = stdout.find(". api (").unwrap();
        let ui = stdout.find(". ui").unwrap();
        assert!(api < ui, "{stdout}");
        assert!(!std::path::Path::new("/nonexistent/app-data").exists());
        std::fs::remove_dir_all(&bundle).unwrap();
    }
}

#[test]
fn bad_bundles_name_the_file_and_field() {
    let bundle = std::env::temp_dir().join(format!("xbundle-rt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&bundle).unwrap();
    let mut manifest = fixture_manifest("1.0.0", false);
    manifest["services"][1]["health"]["type"] = "grpc".into();
    std::fs::write(bundle.join("bundle.json"), manifest.to_string()).unwrap();
    let output = dry_run(&bundle);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("bundle.json: services[1].health.type: unknown variant `grpc`"),
        "{stderr}"
    );

    let mut manifest = fixture_manifest("1.0.0", false);
    manifest["ipc"]["host"] = "0.0.0.0".into();
    manifest["services"][2]["dependencies"] = serde_json::json!(["nope"]);
    std::fs::write(bundle.join("bundle.json"), manifest.to_string()).unwrap();
    let output = dry_run(&bundle);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("ipc.host: `0.0.0.0` is not a loopback address"),
        "{stderr}"
    );
    assert!(
        stderr.contains("services[2].dependencies[0]: unknown service `nope`"),
        "{stderr}"
    );

    std::fs::remove_file(bundle.join("bundle.json")).unwrap();
    let output = dry_run(&bundle);
    assert!(String::from_utf8_lossy(&output.stderr).contains("bundle.json: cannot read"));
    std::fs::remove_dir_all(&bundle).unwrap();
}

#[test]
fn a_crashing_critical_service_stops_the_app_and_a_failed_migration_stops_its_service() {
    let mut manifest = fixture_manifest("1.0.0", false);
    // The worker fails its migration (non-critical: reported, the rest runs on).
    manifest["services"][2]["migrations"] = serde_json::json!([{"version": "1", "command": ["./testsvc", "migrate", "bad"], "env": {"MIGRATE_FAIL": "1"}}]);
    let fixture = Fixture::new("crash", &manifest);
    let mut runtime = fixture.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = runtime.json("/status");
        let worker = status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "worker")
            .unwrap()
            .clone();
        if worker["state"] == "failed" {
            assert!(
                worker["detail"]
                    .as_str()
                    .unwrap()
                    .contains("migration 1 exited"),
                "{worker}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tail = runtime.get("/logs/tail?service=worker").1;
    assert!(tail.contains("migration bad failed on purpose"), "{tail}");
    // A failed non-critical service does not hold `/readyz` back (the desktop shell waits on
    // it): once the API and the UI are ready it answers 200, listing the worker as failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = runtime.get("/readyz");
        if code == 200 {
            break body;
        }
        let status = runtime.json("/status");
        assert!(std::time::Instant::now() < deadline, "{body} {status}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let readyz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readyz["failed"][0]["id"], "worker", "{readyz}");
    let status = runtime.json("/status");
    assert_eq!(status["ready"], true, "{status}");
    let states: Vec<(&str, &str)> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("ui", "ready"), ("api", "ready"), ("worker", "failed")],
        "{status}"
    );
    runtime.post("/shutdown", "");
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
    drop(runtime);

    // A critical service that keeps crashing stops the app with a clear error.
    let mut manifest = fixture_manifest("1.0.0", false);
    manifest["services"][1]["binaries"]["linux-x64"]["args"] = serde_json::json!(["crash"]);
    fixture.write_manifest(&manifest);
    let mut runtime = fixture.start();
    assert_eq!(runtime.wait_exit(Duration::from_secs(60)), 1);
    let stderr = fixture.stderr();
    assert!(
        stderr.contains("critical service `api` failed: exited with code 3; 6 failures in a row"),
        "{stderr}"
    );
    let telemetry =
        std::fs::read_to_string(fixture.app_data.join("telemetry/events.jsonl")).unwrap();
    // Docker's policy: 100 ms, doubling.
    let delays: Vec<u64> = events(&fixture, "service_restart")
        .iter()
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1600], "{telemetry}");
    assert!(telemetry.contains("\"app_failed\""));
}

#[test]
fn restart_backoff_doubles_and_resets_after_a_stable_run() {
    let mut flaky = testsvc_service("flaky", &["flaky"], "flaky up");
    // Run 4 lasts 3 s, well past the 1 s stable window; the others crash at once.
    flaky["env"] = serde_json::json!({"FLAKY_STABLE_MS": "3000"});
    let fixture = Fixture::new(
        "backoff",
        &small_manifest("1.0.0", serde_json::json!([flaky])),
    );
    let mut runtime = fixture.start_with(&[("XBUNDLE_RUNTIME_STABLE_AFTER_MS", "1000")]);
    runtime.wait_ready(&fixture);
    let restarts = events(&fixture, "service_restart");
    let delays: Vec<u64> = restarts
        .iter()
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    let failures: Vec<u64> = restarts
        .iter()
        .map(|e| e["failures"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, [100, 200, 400, 100, 200], "{restarts:?}");
    assert_eq!(failures, [1, 2, 3, 1, 2], "{restarts:?}");
    runtime.post("/shutdown", "");
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
}

/// `--open-ui` opens the UI's address (the one `/ports` reports) in the browser once the app is
/// ready, exactly once; `--no-browser` cancels it. `XBUNDLE_BROWSER` stands in for the browser.
#[test]
fn open_ui_opens_the_ui_address_once_ready_and_no_browser_cancels_it() {
    for (name, args, opens) in [
        ("open-ui", &["--open-ui"][..], true),
        ("no-browser", &["--open-ui", "--no-browser"][..], false),
    ] {
        let fixture = Fixture::new(name, &fixture_manifest("1.0.0", false));
        let opened = fixture.dir.join("opened");
        let browser = fixture.dir.join("browser.sh");
        std::fs::write(
            &browser,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
                opened.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut runtime =
            fixture.start_args(args, &[("XBUNDLE_BROWSER", browser.to_str().unwrap())]);
        runtime.wait_ready(&fixture);
        let ui_url = runtime.json("/ports")["ui_url"]
            .as_str()
            .expect("a UI address")
            .to_string();
        // The browser is started without waiting for it: give it a moment to write.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while opens && !opened.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !opens {
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            fixture.stderr().contains(&format!("UI at {ui_url}")),
            "{}",
            fixture.stderr()
        );
        let (status, _) = runtime.post("/shutdown", "");
        assert_eq!(status, 202, "shutdown accepted");
        assert_eq!(runtime.wait_exit(Duration::from_secs(15)), 0);
        let opened = std::fs::read_to_string(&opened).unwrap_or_default();
        if opens {
            assert_eq!(opened, format!("{ui_url}\n"), "{name}: opened once, the UI");
        } else {
            assert_eq!(opened, "", "{name}: --no-browser opens nothing");
        }
    }
}
