//! How an engine action entry becomes a REAPI action-cache entry, and back.
//!
//! Invariants:
//! - The REAPI `Action` of an engine key is a function of the key alone (our key is known before
//!   anything runs): a `Command` `["xbundle-task", <key hex>]`, the empty input root, and the
//!   key's 32 bytes as the `salt`. Protocol buffers are encoded deterministically by prost
//!   (fields in number order, no unknown fields), so the same key always gives the same action
//!   digest, on every machine and every version of this crate that keeps [`COMMAND_TAG`].
//! - The stored `ActionResult` is a real one (output files with digests and modes, the captured
//!   streams, exit code 0) so other REAPI tools can inspect it; the engine's own entry bytes,
//!   which are what a lookup returns, live in a CAS blob named by a
//!   `build.bazel.remote.execution.v2.Digest` packed in an `Any` in
//!   `execution_metadata.auxiliary_metadata` ([`ENTRY_TYPE_URL`]).
//! - Nothing read back is trusted: [`entry_pointer`] accepts exactly one well-formed pointer
//!   (64 lowercase hex, a size in `0..=max`) and names anything else as garbage.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::Any;
use engine::Digest;
use engine::store::ActionResult;
use prost::Message;

/// The first argument of every `Command` this crate writes: the namespace of our actions.
pub const COMMAND_TAG: &str = "xbundle-task";

/// The type of the `Any` that points at the engine's entry blob.
pub const ENTRY_TYPE_URL: &str = "type.googleapis.com/build.bazel.remote.execution.v2.Digest";

/// The messages that make the REAPI action of one engine key, encoded, and the action's digest.
pub struct KeyedAction {
    pub command: Vec<u8>,
    /// The empty `Directory` (the empty byte string: every field at its default).
    pub input_root: Vec<u8>,
    pub action: Vec<u8>,
    pub digest: re::Digest,
}

/// The REAPI digest message of some bytes.
pub fn digest_of(bytes: &[u8]) -> re::Digest {
    to_re(&Digest::of_bytes(bytes), bytes.len() as u64)
}

/// An engine digest and size as a REAPI digest message.
pub fn to_re(digest: &Digest, size: u64) -> re::Digest {
    re::Digest {
        hash: digest.to_hex(),
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
    }
}

/// A REAPI digest message as an engine digest and size; `None` when it is not one (not 64
/// lowercase hex characters, a negative size).
pub fn from_re(digest: &re::Digest) -> Option<(Digest, u64)> {
    let parsed = Digest::from_hex(&digest.hash)?;
    let size = u64::try_from(digest.size_bytes).ok()?;
    Some((parsed, size))
}

/// The REAPI action that stands for the engine key `key`.
pub fn keyed_action(key: &Digest) -> KeyedAction {
    let command = re::Command {
        arguments: vec![COMMAND_TAG.to_string(), key.to_hex()],
        ..Default::default()
    }
    .encode_to_vec();
    let input_root = re::Directory::default().encode_to_vec();
    let action = re::Action {
        command_digest: Some(digest_of(&command)),
        input_root_digest: Some(digest_of(&input_root)),
        salt: key.as_bytes().to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    let digest = digest_of(&action);
    KeyedAction {
        command,
        input_root,
        action,
        digest,
    }
}

/// The REAPI `ActionResult` for an engine result whose entry bytes are stored under `entry`.
pub fn action_result(result: &ActionResult, entry: &re::Digest) -> re::ActionResult {
    let output_files = result
        .outputs
        .iter()
        .map(|file| re::OutputFile {
            path: file.path.clone(),
            digest: Some(to_re(&file.digest, file.size)),
            is_executable: file.executable,
            ..Default::default()
        })
        .collect();
    let duration_ms = result.duration_ms;
    let virtual_duration = bazel_remote_apis::google::protobuf::Duration {
        seconds: i64::try_from(duration_ms / 1000).unwrap_or(i64::MAX),
        nanos: ((duration_ms % 1000) * 1_000_000) as i32,
    };
    re::ActionResult {
        output_files,
        exit_code: 0,
        stdout_digest: result.stdout.as_ref().map(|s| to_re(&s.digest, s.size)),
        stderr_digest: result.stderr.as_ref().map(|s| to_re(&s.digest, s.size)),
        execution_metadata: Some(re::ExecutedActionMetadata {
            worker: format!("xbundle ({})", result.task),
            virtual_execution_duration: Some(virtual_duration),
            auxiliary_metadata: vec![Any {
                type_url: ENTRY_TYPE_URL.to_string(),
                value: entry.encode_to_vec(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The entry blob an `ActionResult` this crate wrote points at: its digest and size, at most
/// `max` bytes. `Err` names what is wrong (no pointer, two pointers, a malformed one, too big).
pub fn entry_pointer(result: &re::ActionResult, max: u64) -> Result<(Digest, u64), String> {
    let mut pointers = result
        .execution_metadata
        .iter()
        .flat_map(|metadata| &metadata.auxiliary_metadata)
        .filter(|any| any.type_url == ENTRY_TYPE_URL);
    let any = pointers
        .next()
        .ok_or("the action result has no xbundle entry pointer")?;
    if pointers.next().is_some() {
        return Err("the action result has two xbundle entry pointers".to_string());
    }
    let digest = re::Digest::decode(any.value.as_slice())
        .map_err(|error| format!("the xbundle entry pointer does not decode: {error}"))?;
    let (parsed, size) = from_re(&digest).ok_or_else(|| {
        format!(
            "the xbundle entry pointer is not a sha256 digest: {:?}/{}",
            digest.hash, digest.size_bytes
        )
    })?;
    if size > max {
        return Err(format!(
            "the xbundle entry is {size} bytes, more than the {max} an entry may have"
        ));
    }
    Ok((parsed, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::{OutputFile, StoredStream};

    #[test]
    fn the_action_depends_on_the_key_alone() {
        let one = keyed_action(&Digest::of_bytes(b"one"));
        let again = keyed_action(&Digest::of_bytes(b"one"));
        let two = keyed_action(&Digest::of_bytes(b"two"));
        assert_eq!(one.digest, again.digest);
        assert_eq!(one.action, again.action);
        assert_ne!(one.digest, two.digest);
        assert!(one.input_root.is_empty());
        let command = re::Command::decode(one.command.as_slice()).unwrap();
        assert_eq!(
            command.arguments,
            [COMMAND_TAG.to_string(), Digest::of_bytes(b"one").to_hex()]
        );
        let action = re::Action::decode(one.action.as_slice()).unwrap();
        assert_eq!(action.salt, Digest::of_bytes(b"one").as_bytes());
        assert_eq!(action.command_digest, Some(digest_of(&one.command)));
        assert_eq!(
            action.input_root_digest.unwrap().hash,
            Digest::EMPTY.to_hex()
        );
    }

    fn result() -> ActionResult {
        ActionResult {
            task: "build".into(),
            outputs: vec![OutputFile {
                path: "out/app".into(),
                executable: true,
                size: 3,
                digest: Digest::of_bytes(b"app"),
            }],
            stdout: Some(StoredStream {
                size: 2,
                digest: Digest::of_bytes(b"ok"),
            }),
            stderr: None,
            duration_ms: 1500,
            tools: Default::default(),
            discovered: None,
        }
    }

    #[test]
    fn the_action_result_names_outputs_streams_and_the_entry() {
        let entry = digest_of(b"entry bytes");
        let converted = action_result(&result(), &entry);
        assert_eq!(converted.output_files.len(), 1);
        assert_eq!(converted.output_files[0].path, "out/app");
        assert!(converted.output_files[0].is_executable);
        assert_eq!(
            converted.output_files[0].digest,
            Some(to_re(&Digest::of_bytes(b"app"), 3))
        );
        assert_eq!(
            converted.stdout_digest,
            Some(to_re(&Digest::of_bytes(b"ok"), 2))
        );
        assert_eq!(converted.stderr_digest, None);
        assert_eq!(
            entry_pointer(&converted, 100),
            Ok((Digest::of_bytes(b"entry bytes"), 11))
        );
        assert!(
            entry_pointer(&converted, 10)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn missing_doubled_or_malformed_pointers_are_refused() {
        let entry = digest_of(b"entry");
        let mut converted = action_result(&result(), &entry);
        let metadata = converted.execution_metadata.as_mut().unwrap();
        let any = metadata.auxiliary_metadata[0].clone();
        metadata.auxiliary_metadata.push(any);
        assert!(entry_pointer(&converted, 100).unwrap_err().contains("two"));

        let mut converted = action_result(&result(), &entry);
        converted.execution_metadata = None;
        assert!(
            entry_pointer(&converted, 100)
                .unwrap_err()
                .contains("no xbundle")
        );

        for bad in [
            re::Digest {
                hash: "ABC".into(),
                size_bytes: 1,
            },
            re::Digest {
                hash: Digest::EMPTY.to_hex().to_uppercase(),
                size_bytes: 0,
            },
            re::Digest {
                hash: Digest::EMPTY.to_hex(),
                size_bytes: -1,
            },
        ] {
            let converted = action_result(&result(), &bad);
            assert!(entry_pointer(&converted, 100).is_err(), "{bad:?}");
        }
        let mut converted = action_result(&result(), &entry);
        converted
            .execution_metadata
            .as_mut()
            .unwrap()
            .auxiliary_metadata[0]
            .value = vec![0xff, 0xff, 0xff];
        assert!(
            entry_pointer(&converted, 100)
                .unwrap_err()
                .contains("decode")
        );
    }
}
