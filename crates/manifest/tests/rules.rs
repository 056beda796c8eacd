//! The rules of the format, each through `Manifest::from_json` + `validate` on a real corpus
//! manifest with one value changed: confined paths (issue 8, item 11), safe ids, what a
//! generator claims (item 14), fetch URLs (item 15) and bounded formats (item 16). Every
//! problem must carry the JSON path of the value at fault.

use manifest::Manifest;
use serde_json::{Value, json};

/// desktop-happy.json of the conformance corpus, or a copy of its shape when the corpus is
/// absent (the rules do not depend on which).
fn happy() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/vrooli/bundle/desktop-happy.json"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(_) => json!({
            "schema_version": "v0.1", "target": "desktop",
            "app": {"name": "picker-wheel", "version": "1.2.3"},
            "ipc": {"mode": "loopback-http", "host": "127.0.0.1", "port": 47710, "auth_token_path": "runtime/auth-token"},
            "telemetry": {"file": "telemetry/deployment-telemetry.jsonl"},
            "secrets": [
                {"id": "session_secret", "class": "user_prompt", "format": "^[A-Za-z0-9]{32,}$", "target": {"type": "env", "name": "SESSION_SECRET"}},
                {"id": "jwt_secret", "class": "per_install_generated", "generator": {"type": "random", "length": 32, "charset": "alnum"}, "target": {"type": "env", "name": "JWT_SECRET"}}
            ],
            "services": [
                {"id": "ui-server", "type": "ui-bundle", "binaries": {"linux-x64": {"path": "services/ui-server/linux-x64/ui-server"}},
                 "ports": {"requested": [{"name": "http", "range": {"min": 47010, "max": 47030}}]},
                 "health": {"type": "http", "path": "/healthz", "port_name": "http"}, "readiness": {"type": "dependencies_ready"}, "dependencies": ["api"]},
                {"id": "api", "type": "api-binary", "binaries": {"linux-x64": {"path": "services/api/linux-x64/picker-wheel-api"}},
                 "secrets": ["session_secret", "jwt_secret"], "data_dirs": ["data/picker-wheel"], "log_dir": "logs/api",
                 "ports": {"requested": [{"name": "http", "range": {"min": 47040, "max": 47060}}]},
                 "health": {"type": "http", "path": "/healthz", "port_name": "http"}, "readiness": {"type": "health_success"}, "dependencies": ["sqlite"],
                 "migrations": [{"version": "1", "command": ["./picker-wheel-api", "migrate"], "run_on": "upgrade"}]},
                {"id": "sqlite", "type": "resource", "binaries": {"linux-x64": {"path": "resources/sqlite/linux-x64/sqlite-server"}},
                 "ports": {"requested": [{"name": "sql", "range": {"min": 47080, "max": 47095}}]},
                 "assets": [{"path": "data/picker-wheel/seed.sql"}],
                 "health": {"type": "tcp", "port_name": "sql"}, "readiness": {"type": "port_open", "port_name": "sql"}}
            ]
        }),
    }
}

/// The errors of `manifest` as `path: message` lines.
fn errors(manifest: &Value) -> Vec<String> {
    Manifest::from_json(&manifest.to_string())
        .unwrap_or_else(|err| panic!("does not parse: {err}"))
        .validate()
        .into_iter()
        .filter(|p| p.is_error())
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}

/// `happy()` with the value at `pointer` replaced by `value`.
fn with(pointer: &str, value: Value) -> Value {
    let mut manifest = happy();
    *manifest
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    manifest
}

/// Asserts that the manifest has an error at `path` whose message contains `needle`.
#[track_caller]
fn assert_error(manifest: &Value, path: &str, needle: &str) {
    let errors = errors(manifest);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "expected an error at {path} containing {needle:?}, got {errors:#?}"
    );
}

#[test]
fn the_corpus_manifest_is_valid_to_start_with() {
    assert_eq!(errors(&happy()), Vec::<String>::new());
}

/// Issue 8, item 11: the five reproductions, and the other paths of the same class.
#[test]
fn every_path_is_relative_and_confined() {
    // The reproductions.
    assert_error(
        &with("/ipc/auth_token_path", json!("/tmp/x/token")),
        "ipc.auth_token_path",
        "absolute",
    );
    assert_error(
        &with("/telemetry/file", json!("/tmp/x/events.jsonl")),
        "telemetry.file",
        "absolute",
    );
    assert_error(
        &with("/services/2/id", json!("../../../../x/svc")),
        "services[2].id",
        "is not an id",
    );
    assert_error(
        &with(
            "/services/0/binaries",
            json!({"universal": {"path": "../../../x"}}),
        ),
        "services[0].binaries.universal.path",
        "`..`",
    );
    assert_error(
        &with(
            "/services/1/binaries/linux-x64/path",
            json!("../../../x/evil.sh"),
        ),
        "services[1].binaries.linux-x64.path",
        "`..`",
    );
    // The rest of the class: every kind of escape, in every path field.
    let fields = [
        ("/ipc/auth_token_path", "ipc.auth_token_path"),
        ("/telemetry/file", "telemetry.file"),
        (
            "/services/1/binaries/linux-x64/path",
            "services[1].binaries.linux-x64.path",
        ),
        ("/services/1/data_dirs/0", "services[1].data_dirs[0]"),
        ("/services/1/log_dir", "services[1].log_dir"),
        ("/services/2/assets/0/path", "services[2].assets[0].path"),
    ];
    let escapes = [
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x", "drive"),
        ("a\\..\\..\\x", "backslash"),
        ("a/../../x", "`..`"),
        ("..", "`..`"),
        ("./a", "`.`"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("", "empty path"),
        ("a\u{0}b", "NUL"),
        ("a/.. /x", "dots and spaces"),
    ];
    for (pointer, path) in fields {
        for (value, needle) in escapes {
            assert_error(&with(pointer, json!(value)), path, needle);
        }
    }
    // A binary's working directory (where migrations run too) and a build's sources.
    let mut manifest = happy();
    manifest["services"][1]["binaries"]["linux-x64"]["cwd"] = json!("../..");
    manifest["services"][1]["build"] = json!({"type": "go", "source_dir": "/src/api"});
    assert_error(&manifest, "services[1].binaries.linux-x64.cwd", "`..`");
    assert_error(&manifest, "services[1].build.source_dir", "absolute");
    // Programs of migrations and command checks: on PATH, or confined below the cwd.
    let mut manifest = happy();
    manifest["services"][1]["migrations"][0]["command"][0] = json!("../../x/evil.sh");
    manifest["services"][2]["health"] =
        json!({"type": "command", "command": ["/bin/evil", "check"]});
    assert_error(&manifest, "services[1].migrations[0].command[0]", "`..`");
    assert_error(&manifest, "services[2].health.command[0]", "absolute");
    let mut manifest = happy();
    manifest["services"][2]["health"] = json!({"type": "command", "command": ["sh", "-c", "true"]});
    assert_eq!(errors(&manifest), Vec::<String>::new(), "a program on PATH");
    // A health check's path goes into a request line.
    assert_error(
        &with("/services/1/health/path", json!("/h\r\nX-Injected: 1")),
        "services[1].health.path",
        "control character",
    );
    assert_error(
        &with("/services/1/health/path", json!("healthz")),
        "services[1].health.path",
        "starts with `/`",
    );
    // The app name names the app data directory.
    assert_error(
        &with("/app/name", json!("../x")),
        "app.name",
        "one file name",
    );
    assert!(errors(&with("/app/name", json!("Picker Wheel"))).is_empty());
    // A secret's file target is a file name.
    let manifest = with(
        "/secrets/1/target",
        json!({"type": "file", "name": "../../x"}),
    );
    assert_error(&manifest, "secrets[1].target.name", "`..`");
    let manifest = with(
        "/secrets/1/target",
        json!({"type": "file", "name": "keys/jwt.key"}),
    );
    assert_error(&manifest, "secrets[1].target.name", "single file name");
}

/// The app data layout the runtime relies on: what bundle.json names there never lands in
/// `secrets/` or over the runtime's own files, and no two of the files the runtime writes for
/// it are one file (the runtime refuses the same manifests; see runtime/tests/hostile.rs).
#[test]
fn app_data_paths_keep_clear_of_the_runtimes_own_files() {
    assert_error(
        &with("/ipc/auth_token_path", json!("secrets/token")),
        "ipc.auth_token_path",
        "inside `secrets/`",
    );
    assert_error(
        &with("/telemetry/file", json!("runtime/ports.json")),
        "telemetry.file",
        "runtime's own files",
    );
    assert_error(
        &with("/services/1/log_dir", json!("secrets")),
        "services[1].log_dir",
        "inside `secrets/`",
    );
    assert_error(
        &with("/services/1/data_dirs", json!(["secrets/api"])),
        "services[1].data_dirs[0]",
        "inside `secrets/`",
    );
    assert_error(
        &with("/ipc/auth_token_path", json!("runtime/ipc-port")),
        "ipc.auth_token_path",
        "control port",
    );
    assert_error(
        &with("/telemetry/file", json!("runtime/auth-token")),
        "telemetry.file",
        "also the file of ipc.auth_token_path",
    );
    // The api service logs to logs/api/api.log.
    assert_error(
        &with("/telemetry/file", json!("logs/api/api.log")),
        "services[1] (its log file)",
        "also the file of telemetry.file",
    );
    // However it is spelled: case-insensitive file systems (macOS, Windows) and Windows'
    // trailing dots read these as the runtime's own files, or as one file twice.
    assert_error(
        &with("/ipc/auth_token_path", json!("Runtime/LOCK")),
        "ipc.auth_token_path",
        "runtime's own files",
    );
    assert_error(
        &with("/telemetry/file", json!("runtime/migrations.json.")),
        "telemetry.file",
        "runtime's own files",
    );
    assert_error(
        &with("/services/1/log_dir", json!("Secrets")),
        "services[1].log_dir",
        "inside `secrets/`",
    );
    assert_error(
        &with("/telemetry/file", json!("Runtime/Auth-Token")),
        "telemetry.file",
        "also the file of ipc.auth_token_path",
    );
    assert_error(
        &with("/ipc/auth_token_path", json!("runtime/IPC-Port")),
        "ipc.auth_token_path",
        "control port",
    );
    // `runtime/` itself is not reserved: the corpus keeps its token there.
    assert_eq!(
        errors(&with("/ipc/auth_token_path", json!("runtime/token"))),
        Vec::<String>::new()
    );
}

#[test]
fn windows_binaries_may_use_backslashes_and_nothing_else_may() {
    let mut manifest = happy();
    manifest["services"][1]["binaries"]["win-x64"] =
        json!({"path": "services\\api\\windows-x64\\api.exe", "cwd": "services\\api"});
    assert_eq!(errors(&manifest), Vec::<String>::new());
    manifest["services"][1]["binaries"]["win-x64"]["path"] = json!("services\\..\\..\\evil.exe");
    assert_error(&manifest, "services[1].binaries.win-x64.path", "`..`");
    assert_error(
        &with(
            "/services/1/binaries/linux-x64/path",
            json!("services\\api\\api"),
        ),
        "services[1].binaries.linux-x64.path",
        "backslash",
    );
}

#[test]
fn ids_and_port_names_are_safe_names() {
    for bad in [
        "../../../../x/svc",
        "a/b",
        "Api",
        "-api",
        "a b",
        "a.b",
        "",
        "a}b",
    ] {
        let mut manifest = happy();
        manifest["services"][2]["id"] = json!(bad);
        manifest["services"][1]["dependencies"] = json!([bad]);
        assert_error(&manifest, "services[2].id", "");
        let manifest = with("/services/2/ports/requested/0/name", json!(bad));
        assert_error(&manifest, "services[2].ports.requested[0].name", "");
        let mut manifest = happy();
        manifest["secrets"][1]["id"] = json!(bad);
        manifest["services"][1]["secrets"] = json!(["session_secret", bad]);
        assert_error(&manifest, "secrets[1].id", "");
    }
}

/// Issue 8, item 14.
#[test]
fn generators_are_what_they_claim() {
    let generator = |value: Value| with("/secrets/1/generator", value);
    // `alnum_symbols` is a named set of 90 characters, known to both sides.
    assert!(errors(&generator(json!({"charset": "alnum_symbols"}))).is_empty());
    // A misspelled name is an error with "did you mean", not a literal set of its letters.
    assert_error(
        &generator(json!({"type": "random", "length": 32, "charset": "alnum_sybmols"})),
        "secrets[1].generator.charset",
        "did you mean `alnum_symbols`?",
    );
    assert_error(
        &generator(json!({"charset": "hexa"})),
        "secrets[1].generator.charset",
        "did you mean `hex`?",
    );
    // A name in another case is that name misspelled, not the set of its letters: with a
    // length giving 128 bits, `HEX` passed as the set {E, H, X}.
    for (charset, name) in [("HEX", "hex"), ("Alnum", "alnum"), ("DIGITS", "digits")] {
        assert_error(
            &generator(json!({"length": 128, "charset": charset})),
            "secrets[1].generator.charset",
            &format!("did you mean `{name}`?"),
        );
    }
    // A literal set of capitals is still one.
    assert!(errors(&generator(json!({"charset": "ABCDEFGHIJKLMNOP"}))).is_empty());
    // A literal set needs 16 distinct characters or 128 bits.
    assert_error(
        &generator(json!({"length": 32, "charset": "0123456789"})),
        "secrets[1].generator.charset",
        "10 distinct characters: 32 of them give 106 bits",
    );
    assert!(errors(&generator(json!({"length": 39, "charset": "0123456789"}))).is_empty());
    assert!(
        errors(&generator(
            json!({"length": 8, "charset": "0123456789abcdef"})
        ))
        .is_empty()
    );
    // Lengths and types.
    assert_error(
        &generator(json!({"length": 4})),
        "secrets[1].generator.length",
        "outside 8..=4096",
    );
    assert_error(
        &generator(json!({"type": "uuid", "length": 12})),
        "secrets[1].generator.length",
        "36",
    );
    assert_error(
        &generator(json!({"type": "hex", "charset": "alnum"})),
        "secrets[1].generator.charset",
        "random generators only",
    );
}

/// Issue 8, item 15.
#[test]
fn fetch_urls_are_https_or_loopback_http() {
    let fetched = |url: &str| {
        let mut manifest = happy();
        manifest["secrets"][0] = json!({
            "id": "session_secret", "class": "remote_fetch",
            "fetch": {"url": url}, "target": {"type": "env", "name": "SESSION_SECRET"}
        });
        manifest
    };
    for ok in [
        "https://vault.example/v1/s",
        "http://127.0.0.1:8200/v1/s",
        "http://localhost/s",
        "http://[::1]:1/s",
    ] {
        assert_eq!(errors(&fetched(ok)), Vec::<String>::new(), "{ok}");
    }
    assert_error(
        &fetched("http://vault.example/v1/s"),
        "secrets[0].fetch.url",
        "not loopback",
    );
    assert_error(
        &fetched("ftp://vault.example/s"),
        "secrets[0].fetch.url",
        "scheme `ftp` is not supported",
    );
    let errors = errors(&fetched("http://robot:s3cr3t@vault.example/s?token=abc"));
    assert!(
        errors
            .iter()
            .all(|e| !e.contains("s3cr3t") && !e.contains("abc")),
        "{errors:?}"
    );
}

/// Issue 8, item 16.
#[test]
fn formats_compile_within_limits() {
    assert_error(
        &with("/secrets/0/format", json!("^[A-Za-z0-9")),
        "secrets[0].format",
        "not a valid regular expression",
    );
    assert_error(
        &with("/secrets/0/format", json!("(a{100}){100}")),
        "secrets[0].format",
        "compiles to more than",
    );
    assert_error(
        &with("/secrets/0/format", json!("a".repeat(2000))),
        "secrets[0].format",
        "over the limit",
    );
}

/// Rules the runtime met alone, after validation had accepted the manifest: a `log_match`
/// pattern it could not compile (the service failed at readiness), a NUL no process can
/// receive (the service never started), a format that escapes its anchoring (it accepted
/// any value), a fetch timeout without bound (the start waited for it), a manifest too large
/// for a small runtime (a 100 MB string took 200 MB).
#[test]
fn what_the_runtime_needs_is_checked_by_validation() {
    let mut pattern = happy();
    pattern["services"][0]["readiness"] = json!({"type": "log_match", "pattern": "ready ("});
    assert_error(
        &pattern,
        "services[0].readiness.pattern",
        "not a valid regular expression",
    );
    pattern["services"][0]["readiness"]["pattern"] = json!("(a{100}){100}");
    assert_error(
        &pattern,
        "services[0].readiness.pattern",
        "compiles to more than",
    );
    let mut health = happy();
    health["services"][0]["health"] = json!({"type": "log_match", "pattern": "[z-a]"});
    assert_error(
        &health,
        "services[0].health.pattern",
        "not a valid regular expression",
    );

    for (pointer, path) in [
        ("/services/1/env", "services[1].env.X"),
        (
            "/services/1/migrations/0/env",
            "services[1].migrations[0].env.X",
        ),
    ] {
        let mut manifest = happy();
        manifest
            .pointer_mut(pointer.rsplit_once('/').unwrap().0)
            .unwrap()[pointer.rsplit_once('/').unwrap().1] = json!({"X": "a\u{0}b"});
        assert_error(&manifest, path, "NUL");
    }
    let mut args = happy();
    args["services"][1]["binaries"]["linux-x64"]["args"] = json!(["ok", "x\u{0}"]);
    assert_error(&args, "services[1].binaries.linux-x64.args[1]", "NUL");
    let mut command = happy();
    command["services"][1]["migrations"][0]["command"] = json!(["./picker-wheel-api", "\u{0}"]);
    assert_error(&command, "services[1].migrations[0].command[1]", "NUL");

    for escape in ["[A-Za-z0-9]{32,})|(?:.*", "x)|("] {
        assert_error(
            &with("/secrets/0/format", json!(escape)),
            "secrets[0].format",
            "not a valid regular expression",
        );
    }

    let fetched = |timeout_ms: Value| {
        let mut manifest = happy();
        manifest["secrets"][0] = json!({
            "id": "session_secret", "class": "remote_fetch",
            "fetch": {"url": "https://vault.example/s", "timeout_ms": timeout_ms},
            "target": {"type": "env", "name": "SESSION_SECRET"}
        });
        manifest
    };
    assert_eq!(errors(&fetched(json!(60_000))), Vec::<String>::new());
    for bad in [json!(0), json!(60_001), json!(u64::MAX)] {
        assert_error(
            &fetched(bad.clone()),
            "secrets[0].fetch.timeout_ms",
            "at most 60000",
        );
    }

    let mut huge = happy();
    huge["app"]["description"] = json!("x".repeat(manifest::MAX_MANIFEST_BYTES));
    let err = Manifest::from_json(&huge.to_string()).unwrap_err();
    assert!(err.to_string().contains("longer than the limit"), "{err}");
}

#[test]
fn problems_stay_bounded_whatever_the_input() {
    // Thousands of dangling templates behind a huge key: the report is capped and quotes
    // only the start of the key.
    let key = "K".repeat(30_000);
    let mut manifest = happy();
    manifest["services"][1]["env"] = json!({ key: "${x.y}".repeat(5000) });
    let problems = Manifest::from_json(&manifest.to_string())
        .unwrap()
        .validate();
    assert!(problems.len() <= manifest::MAX_PROBLEMS + 1);
    let total: usize = problems
        .iter()
        .map(|p| p.path.len() + p.message.len())
        .sum();
    assert!(total < 1_000_000, "{total} bytes of problems");
    // A dependency chain of 30 000 services: no recursion to overflow the stack.
    let services: Vec<Value> = (0..30_000)
        .map(|i| {
            json!({"id": format!("s{i}"), "type": "worker", "binaries": {"linux-x64": {"path": "bin/s"}},
                   "health": {"type": "command", "command": ["true"]}, "readiness": {"type": "dependencies_ready"},
                   "dependencies": [format!("s{}", (i + 1) % 30_000)]})
        })
        .collect();
    let mut manifest = happy();
    manifest["services"] = Value::Array(services);
    // Over the size `from_json` reads, but `validate` also checks manifests built in memory
    // (the pipeline's), so it is given one directly.
    let errors: Vec<String> = serde_json::from_value::<Manifest>(manifest)
        .unwrap()
        .validate()
        .into_iter()
        .filter(|p| p.is_error())
        .map(|p| p.message)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("dependency cycle: s0 -> s1")
                && e.contains("(30000 services in all)")),
        "{:?}",
        errors.first()
    );
}
