//! The typed model of bundle.json desktop v0.1.
//!
//! Closed sets of the schema are enums; ids are newtypes; maps are `BTreeMap`s so output is
//! deterministic. Objects the schema leaves open carry `extra`, a map of the fields this model
//! does not name, written back unchanged. Fields marked "extension" are additive: not in the
//! v0.1 schema, allowed by it (its objects accept other properties).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Fields of an open object that this model does not name, kept as they were.
pub type Extra = BTreeMap<String, Value>;

/// String-to-string environment, as in `env` blocks.
pub type EnvMap = BTreeMap<String, String>;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }
    };
}

string_id!(
    /// A service's `id`, unique in the manifest.
    ServiceId
);
string_id!(
    /// A secret's `id`, unique in the manifest.
    SecretId
);
string_id!(
    /// A port's `name`, unique within its service (`${service.port_name}` in templates).
    PortName
);
string_id!(
    /// A key of `binaries`: `linux-x64`, `linux-arm64`, `darwin-x64`, `darwin-arm64`, `win-x64`,
    /// or `universal` (any platform, e.g. a directory of static files).
    PlatformKey
);

/// `schema_version`: always `"v0.1"` for this model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum SchemaVersion {
    #[default]
    #[serde(rename = "v0.1")]
    V0_1,
}

/// `target`: always `"desktop"` for this model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Desktop,
}

/// The whole bundle.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    pub schema_version: SchemaVersion,
    pub target: Target,
    pub app: App,
    pub ipc: Ipc,
    pub telemetry: Telemetry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swaps: Option<Vec<Swap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<Secret>>,
    /// At least one.
    #[schemars(length(min = 1))]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_signing: Option<CodeSigning>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `app`: what the bundle is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct App {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Compared across runs by the runtime: a change runs `upgrade` migrations.
    #[schemars(length(min = 1))]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ipc.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IpcMode {
    #[serde(rename = "loopback-http")]
    LoopbackHttp,
}

/// `ipc`: where the runtime's control API listens and where its bearer token is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ipc {
    pub mode: IpcMode,
    /// A loopback address (`127.0.0.1`, `::1`, `localhost`); validation rejects others.
    #[schemars(length(min = 1))]
    pub host: String,
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Relative to the app data directory.
    #[schemars(length(min = 1))]
    pub auth_token_path: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `telemetry`: the JSON-lines event file (relative to the app data directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Telemetry {
    #[schemars(length(min = 1))]
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.min <= port && port <= self.max
    }
}

/// Top-level `ports`: the default range and ports never to hand out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Ports {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_range: Option<PortRange>,
    /// `null` reads as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Vec<u16>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A dependency swap the pipeline applied (informational for the runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Swap {
    #[schemars(length(min = 1))]
    pub original: String,
    #[schemars(length(min = 1))]
    pub replacement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `secrets[].class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretClass {
    /// Never bundled: validation rejects a manifest that keeps one.
    Infrastructure,
    /// Generated once per install with the OS CSPRNG (see [`Generator`]).
    PerInstallGenerated,
    /// Asked of the user (the runtime takes it through its control API).
    UserPrompt,
    /// Fetched at run time (see [`RemoteFetch`]); needs network.
    RemoteFetch,
}

impl SecretClass {
    /// Every class, in the schema's order.
    pub const ALL: [SecretClass; 4] = [
        SecretClass::Infrastructure,
        SecretClass::PerInstallGenerated,
        SecretClass::UserPrompt,
        SecretClass::RemoteFetch,
    ];

    /// As bundle.json spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretClass::Infrastructure => "infrastructure",
            SecretClass::PerInstallGenerated => "per_install_generated",
            SecretClass::UserPrompt => "user_prompt",
            SecretClass::RemoteFetch => "remote_fetch",
        }
    }
}

impl fmt::Display for SecretClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret the services need. Its value never appears in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    pub id: SecretId,
    pub class: SecretClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Absent means required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<SecretPrompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// Extension: where a `remote_fetch` secret comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<RemoteFetch>,
    pub target: SecretTarget,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Secret {
    /// `required`, defaulting to true.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(true)
    }
}

/// What a `user_prompt` secret's prompt shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct SecretPrompt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `generator.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorType {
    /// `length` characters drawn from `charset`.
    #[default]
    Random,
    /// A random (version 4) UUID; `length` and `charset` are ignored.
    Uuid,
    /// `length` lowercase hex digits.
    Hex,
    /// `length` random bytes, base64-encoded (standard alphabet, padded).
    Base64,
}

/// How a `per_install_generated` secret is generated. Defaults: random, 32, `alnum`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Generator {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<GeneratorType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    /// A named set (`alnum`, `alpha`, `lower`, `upper`, `numeric`, `hex`, `base64`,
    /// `base64url`, `alnum_symbols`) or the literal characters to draw from (at least 16
    /// distinct, or a `length` giving 128 bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Extension: where a `remote_fetch` secret is fetched from. The response body (trimmed) is
/// the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteFetch {
    /// `https://`, or `http://` to a loopback host.
    pub url: String,
    /// Default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Extra request headers (e.g. an authorization header taken from the environment is out
    /// of scope: values are literal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `secrets[].target.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretTargetType {
    /// An environment variable named `name`.
    Env,
    /// A 0600 file; the service gets its path in `SECRET_FILE_<ID>` (and in `name`, if set).
    /// `name` must be a plain file name.
    File,
}

impl SecretTargetType {
    /// As bundle.json spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretTargetType::Env => "env",
            SecretTargetType::File => "file",
        }
    }

    /// Reads a type as bundle.json spells it.
    pub fn parse(text: &str) -> Result<SecretTargetType, String> {
        match text {
            "env" => Ok(SecretTargetType::Env),
            "file" => Ok(SecretTargetType::File),
            other => Err(format!(
                "unknown target type `{}` (use \"env\" or \"file\")",
                other.escape_debug()
            )),
        }
    }
}

impl fmt::Display for SecretTargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a secret reaches a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretTarget {
    #[serde(rename = "type")]
    pub kind: SecretTargetType,
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `services[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    /// A built UI: served by the runtime itself when its binary path is a directory.
    UiBundle,
    ApiBinary,
    Worker,
    Resource,
}

/// One service of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Service {
    pub id: ServiceId,
    #[serde(rename = "type")]
    pub kind: ServiceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Per platform (see [`PlatformKey`]).
    pub binaries: BTreeMap<PlatformKey, Binary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Values may use `${service.port}`, `${data}` and `${bundle}` templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretId>>,
    /// Created under the app data directory before the service starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dirs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<ServicePorts>,
    pub health: Health,
    pub readiness: Readiness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<ServiceId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Vec<Migration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Vec<Asset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// A critical service that keeps failing stops the whole app. Absent means false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Service {
    pub fn dependencies(&self) -> &[ServiceId] {
        self.dependencies.as_deref().unwrap_or(&[])
    }
    pub fn secret_ids(&self) -> &[SecretId] {
        self.secrets.as_deref().unwrap_or(&[])
    }
    pub fn requested_ports(&self) -> &[PortRequest] {
        self.ports
            .as_ref()
            .map(|ports| ports.requested.as_slice())
            .unwrap_or(&[])
    }
    pub fn migrations(&self) -> &[Migration] {
        self.migrations.as_deref().unwrap_or(&[])
    }
    pub fn assets(&self) -> &[Asset] {
        self.assets.as_deref().unwrap_or(&[])
    }
    pub fn is_critical(&self) -> bool {
        self.critical.unwrap_or(false)
    }
    /// The binary for a platform: its own entry, else `universal`.
    pub fn binary_for(&self, platform: &str) -> Option<(&PlatformKey, &Binary)> {
        self.binaries
            .get_key_value(platform)
            .or_else(|| self.binaries.get_key_value("universal"))
    }
}

/// How to run a service on one platform. Paths are relative to the bundle root, without
/// `..`, `.` or empty components; those of `win-*` platforms may separate them with `\\`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Binary {
    #[schemars(length(min = 1))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `build.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildType {
    Go,
    Rust,
    Npm,
    Python,
    Custom,
}

/// How the pipeline builds a service's binaries (not used by the runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Build {
    #[serde(rename = "type")]
    pub kind: BuildType,
    #[schemars(length(min = 1))]
    pub source_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvMap>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A service's `ports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServicePorts {
    pub requested: Vec<PortRequest>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One port a service asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PortRequest {
    pub name: PortName,
    pub range: PortRange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_socket: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `health.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthType {
    /// GET `path` on `port_name` answers 2xx.
    Http,
    /// A TCP connection to `port_name` succeeds.
    Tcp,
    /// `command` exits 0.
    Command,
    /// The service's log has a line matching `pattern`.
    LogMatch,
}

/// How the runtime checks that a service is healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    #[serde(rename = "type")]
    pub kind: HealthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<PortName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Extension: the regular expression of a `log_match` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Default 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Default 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Consecutive failures before the service counts as unhealthy. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `readiness.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessType {
    /// The health check succeeds once.
    HealthSuccess,
    /// A TCP connection to `port_name` succeeds.
    PortOpen,
    /// The service's log has a line matching `pattern`.
    LogMatch,
    /// Ready as soon as it runs and its dependencies are ready.
    DependenciesReady,
}

/// When the runtime counts a service as ready (its dependents wait for that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Readiness {
    #[serde(rename = "type")]
    pub kind: ReadinessType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<PortName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `migrations[].run_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunOn {
    /// On any start, the first time the runtime sees this migration version.
    #[default]
    Always,
    /// Only on the first start of an install.
    FirstInstall,
    /// Only on a start whose app version differs from the previous start's.
    Upgrade,
    /// A legacy spelling of `first_install` (found in real manifests), written back as is.
    Install,
}

impl RunOn {
    /// `install` means `first_install`.
    pub fn normalized(self) -> RunOn {
        match self {
            RunOn::Install => RunOn::FirstInstall,
            other => other,
        }
    }
}

/// A command run before a service starts, once per `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Migration {
    #[schemars(length(min = 1))]
    pub version: String,
    /// The program (relative to the service's working directory, or on `PATH`) and arguments.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvMap>,
    /// Absent means `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_on: Option<RunOn>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A file (or an unpacked directory) the service needs, verified before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Asset {
    /// Relative to the bundle root.
    #[schemars(length(min = 1))]
    pub path: String,
    /// The file's SHA-256 (64 lowercase hex digits), or for an unpacked directory its tree
    /// digest ([`crate::tree`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file's size, or the total of an unpacked directory's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Extension: where the pipeline fetched it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Extension: `path` is a directory unpacked from an archive, and `sha256` its tree digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `gpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Gpu {
    /// e.g. `required`, `optional`, `optional_with_cpu_fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `code_signing` (read by the packaging stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CodeSigning {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<SigningWindows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macos: Option<SigningMacos>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<SigningLinux>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `code_signing.windows.certificate_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    File,
    Store,
    AzureKeyvault,
    AwsKms,
}

/// `code_signing.windows.sign_algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

/// Windows signing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningWindows {
    pub certificate_source: CertificateSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_thumbprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_algorithm: Option<SignAlgorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_sign: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// macOS signing and notarization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningMacos {
    #[schemars(length(min = 1))]
    pub identity: String,
    #[schemars(length(min = 1))]
    pub team_id: String,
    pub hardened_runtime: bool,
    pub notarize: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlements_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_id_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_id_password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_api_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_api_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_api_issuer_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Linux (GPG) signing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct SigningLinux {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpg_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpg_passphrase_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpg_homedir: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
