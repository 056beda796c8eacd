//! Signing hooks: `[sign] <format> = "<command template>"` in bundle.toml.
//!
//! The template is split into words like a shell would (quotes, no expansion) and run without
//! a shell. In each word, `{in}` is the unsigned artifact and `{out}` the path the signed one is
//! written to (a template without `{out}` signs `{in}` in place); any other `{name}` is the
//! value of the environment variable `XBUNDLE_SIGN_<NAME>`, so keys and passwords come only
//! from the environment (their values enter the task's key as digests, never in clear, and
//! messages show the template, never the values). `{{` and `}}` are literal braces.
//!
//! The package task runs the hook on a private copy of the artifact and publishes the signed
//! file atomically; a signer that fails, or writes nothing, fails the task and nothing is
//! cached, and the previously published artifact stays as it was (the task replaces its output
//! itself: [`engine::Action::replaces_outputs`]). Checksums and update manifests
//! (`publish:<profile>`) are made from the published, signed file.
//!
//! The repository's files a template names with a relative path (`./tools/sign.sh`,
//! `certs/app.p12`: [`repository_files`]) are inputs of the package task, so editing a signing
//! script signs again; the signing tool itself (`osslsigncode`) is not in the key.
//!
//! **Invariant:** a secret's value never reaches a message, a log or the cache: the key holds
//! its digest, messages name the variable and show the template, and what a failing signer
//! printed is shown with every value the template used replaced by `***` (a signer that echoes
//! its arguments, `sh -x`, does not leak the key). A signer that succeeds prints nothing
//! anywhere: its output is dropped, never cached.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use engine::{ActionContext, ActionFailure};

/// One piece of a template word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    In,
    Out,
    /// `XBUNDLE_SIGN_<NAME>`.
    Env(String),
}

/// Splits a template into words of pieces, or says what is wrong with it.
fn parse(template: &str) -> Result<Vec<Vec<Piece>>, String> {
    let words =
        shlex::split(template).ok_or_else(|| "the template has an unclosed quote".to_string())?;
    if words.is_empty() {
        return Err("the template is empty".into());
    }
    let mut parsed = Vec::new();
    for word in words {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = word.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                            _ => {
                                return Err(format!(
                                    "`{{{name}` is not a placeholder: write {{in}}, {{out}} or {{name}} with letters, digits and `_` (`{{{{` for a brace)"
                                ));
                            }
                        }
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(match name.as_str() {
                        "in" => Piece::In,
                        "out" => Piece::Out,
                        "" => return Err("`{}` names no placeholder".into()),
                        other => Piece::Env(format!("XBUNDLE_SIGN_{}", other.to_ascii_uppercase())),
                    });
                }
                '}' => return Err("a `}` closes no placeholder (`}}` for a brace)".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        parsed.push(pieces);
    }
    if !parsed.iter().flatten().any(|piece| *piece == Piece::In) {
        return Err(
            "the template never names the artifact: put {in} where the signer takes it".into(),
        );
    }
    Ok(parsed)
}

/// Checks a template (at load time).
pub fn parse_template(template: &str) -> Result<(), String> {
    parse(template).map(|_| ())
}

/// The environment variables a template reads, sorted.
pub fn variables(template: &str) -> Vec<String> {
    let mut names: Vec<String> = parse(template)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter_map(|piece| match piece {
            Piece::Env(name) => Some(name),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The repository's files a template names (a signing script, a certificate): every word
/// without a placeholder that is a relative path with a `/` (`./sign.sh`, `certs/app.p12`) and
/// names a regular file of the root, reached through no link, outside `skip` (the output
/// directory, where other tasks' files live). They are the package task's inputs, so changing
/// the script signs again; their digests enter the key, never their content.
pub fn repository_files(root: &camino::Utf8Path, template: &str, skip: &[&str]) -> Vec<String> {
    let Ok(words) = parse(template) else {
        return Vec::new();
    };
    let Ok(tree) = engine::confine::Dir::open_root(root.as_std_path()) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for word in words {
        let [Piece::Text(text)] = word.as_slice() else {
            continue;
        };
        let path = text.strip_prefix("./").unwrap_or(text);
        if !text.contains('/')
            || path.starts_with(['/', '-'])
            || path
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == ".." || part == ".git")
            || skip
                .iter()
                .any(|dir| path == *dir || path.starts_with(&format!("{dir}/")))
        {
            continue;
        }
        if let Ok(Some((engine::confine::Kind::File, _))) = tree.lstat(path) {
            files.push(engine::overlap::escape(path));
        }
    }
    files.sort();
    files.dedup();
    files
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

/// Signs `unsigned` (a private file) with `template`; returns the signed file's path.
pub fn run(
    context: &ActionContext<'_>,
    template: &str,
    unsigned: &Path,
    format: &str,
) -> Result<PathBuf, ActionFailure> {
    let words =
        parse(template).map_err(|problem| failure(format!("[sign] {format}: {problem}")))?;
    let in_place = !words.iter().flatten().any(|piece| *piece == Piece::Out);
    let signed = if in_place {
        unsigned.to_path_buf()
    } else {
        unsigned.with_file_name(format!("signed.{}", format.replace('/', "_")))
    };
    let mut argv: Vec<OsString> = Vec::new();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for word in &words {
        let mut arg = OsString::new();
        for piece in word {
            match piece {
                Piece::Text(text) => arg.push(text),
                Piece::In => arg.push(unsigned),
                Piece::Out => arg.push(&signed),
                Piece::Env(name) => match context.env.get(std::ffi::OsStr::new(name)) {
                    Some(value) => {
                        use std::os::unix::ffi::OsStrExt;
                        secrets.push(value.as_bytes().to_vec());
                        arg.push(value)
                    }
                    None => {
                        return Err(failure(format!(
                            "[sign] {format}: the template needs the environment variable {name}, which is not set (secrets for signing come only from the environment)"
                        )));
                    }
                },
            }
        }
        argv.push(arg);
    }
    let mut command = std::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(context.env)
        .current_dir(context.root)
        .stdin(std::process::Stdio::null())
        // Captured, never inherited: a signer's chatter would reach the terminal unredacted
        // (and break `--message-format json`'s stdout).
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    engine::task::die_with_parent(&mut command);
    let output = context
        .cancel
        .run(&mut command, std::process::Child::wait_with_output)
        .map_err(|err| {
            failure(format!(
                "[sign] {format}: could not run the signer (`{template}`): {err}"
            ))
        })?;
    if !output.status.success() {
        return Err(ActionFailure {
            message: format!(
                "[sign] {format}: the signer (`{template}`) exited with {}; nothing was published or cached",
                output.status
            ),
            stdout: redact(&output.stdout, &secrets),
            stderr: redact(&output.stderr, &secrets),
        });
    }
    match std::fs::symlink_metadata(&signed) {
        Ok(meta) if meta.is_file() && meta.len() > 0 => {}
        _ => {
            return Err(failure(format!(
                "[sign] {format}: the signer (`{template}`) succeeded but left no signed file at {{out}}"
            )));
        }
    }
    Ok(signed)
}

/// `bytes` with every occurrence of each non-empty secret replaced by `***` (longest first, so
/// a secret holding another is hidden whole).
fn redact(bytes: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut secrets: Vec<&Vec<u8>> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    'scan: while at < bytes.len() {
        for secret in &secrets {
            if bytes[at..].starts_with(secret) {
                out.extend_from_slice(b"***");
                at += secret.len();
                continue 'scan;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_files_are_plain_relative_files_outside_the_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = camino::Utf8Path::from_path(dir.path()).unwrap();
        for file in ["tools/sign.sh", "certs/a[1].p12", "dist/x.sh", "plain"] {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), "x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("tools/link")).unwrap();
        let files = repository_files(
            root,
            "sh ./tools/sign.sh -k certs/a[1].p12 dist/x.sh tools/link plain ../x tools/missing /etc/passwd {in} {out}",
            &["dist"],
        );
        assert_eq!(files, ["certs/a\\[1\\].p12", "tools/sign.sh"]);
    }

    #[test]
    fn secrets_are_redacted_from_what_a_signer_printed() {
        let secrets = vec![b"hunter2".to_vec(), b"hunter2-long".to_vec(), Vec::new()];
        assert_eq!(
            redact(b"+ sign -k hunter2-long -p hunter2 x", &secrets),
            b"+ sign -k *** -p *** x"
        );
        assert_eq!(redact(b"nothing here", &secrets), b"nothing here");
    }

    #[test]
    fn templates_split_into_words_and_placeholders() {
        let words = parse("osslsigncode sign -pkcs12 {key} -in {in} -out {out}").unwrap();
        assert_eq!(words.len(), 8);
        assert_eq!(words[3], vec![Piece::Env("XBUNDLE_SIGN_KEY".into())]);
        assert_eq!(words[5], vec![Piece::In]);
        assert_eq!(
            parse("sh -c 'cat {in} > {out}'").unwrap()[2],
            vec![
                Piece::Text("cat ".into()),
                Piece::In,
                Piece::Text(" > ".into()),
                Piece::Out
            ]
        );
        assert_eq!(
            variables("s {b} {a} {in} {b}"),
            ["XBUNDLE_SIGN_A", "XBUNDLE_SIGN_B"]
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (template, says) in [
            ("", "empty"),
            ("sign 'unclosed {in}", "quote"),
            ("sign {in", "placeholder"),
            ("sign {a-b} {in}", "placeholder"),
            ("sign } {in}", "closes no placeholder"),
            ("sign {out}", "never names the artifact"),
        ] {
            let err = parse(template).unwrap_err();
            assert!(err.contains(says), "{template}: {err}");
        }
        assert!(parse("sign {{literal}} {in}").is_ok());
    }
}
