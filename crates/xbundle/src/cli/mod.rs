//! The `cargo xtask` command line. A repository's whole `xtask/src/main.rs` can be:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     xbundle::cli::main()
//! }
//! ```

mod affected;
mod build;
mod cache;
mod ci;
mod completions;
mod doctor;
mod hooks;
mod init;
mod pipeline;
mod profile;
mod queries;
mod serve;
mod thin;
mod watch;

pub(crate) use cache::parse_size;

use std::process::ExitCode;

use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use engine::{Engine, EngineConfig, GraphFormat};
use serde_json::json;

use crate::analysis::render::DagFormat;
use crate::config::{self, BundleConfig};
use crate::diagnostic::Diagnostic;
use crate::plan;
use crate::shell::{LogOrder, MessageFormat, OutputLogs, Shell, Verbosity};

#[derive(Debug, Parser)]
#[command(
    name = "cargo-xtask",
    version,
    about = "xbundle: declarative, incremental, content-addressed builds of desktop bundles",
    after_help = "Global options (--root, -q, -v, --message-format) go before or after the command.\nExit codes: 0 success, 1 a task failed, 2 bad input (usage, bundle.toml), 3 I/O or internal error, 130/143 interrupted (SIGINT/SIGTERM).",
    after_long_help = "Global options (--root, -q, -v, --message-format) go before or after the command.\nExit codes: 0 success, 1 a task failed, 2 bad input (usage, bundle.toml), 3 I/O or internal error, 130/143 interrupted (SIGINT/SIGTERM).\n\nExamples:\n  cargo xtask bundle                 build the default profile\n  cargo xtask profile list           the profiles of bundle.toml\n  cargo xtask help bundle            one command's options and an example"
)]
pub struct Cli {
    /// Repository root (default: the nearest directory upward holding bundle.toml) [global]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<Utf8PathBuf>,
    /// The parallel jobs of the command that runs tasks (set from its `-j`)
    #[arg(skip)]
    jobs: Option<usize>,
    /// Print only errors [global]
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say why each task runs, and list fresh tasks [global]
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Output format: human status lines, or one JSON object per line on stdout (every
    /// command) [global]
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a profile's bundles: analysis, secrets, bundle.json, builds and a stage per
    /// platform (dist/<profile>/stage/<platform>/), and every declared task
    #[command(
        after_long_help = "Examples:\n  cargo xtask bundle                              the default profile (workspace.default-profile)\n  cargo xtask bundle notes-desktop --platform linux-x64\n  cargo xtask bundle --dry-run                    what would run, and what is cached"
    )]
    Bundle {
        /// Profile to build (default: workspace.default-profile; none: every task)
        profile: Option<String>,
        /// Only these platforms of the profile (repeatable; default: all of them)
        #[arg(long = "platform", value_name = "PLATFORM")]
        platforms: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run declared tasks and their dependencies (all of them when none is named)
    #[command(
        after_long_help = "Examples:\n  cargo xtask task                  every declared task\n  cargo xtask task greeting -j 2    one task and its dependencies, two at a time"
    )]
    Task {
        /// Task names (`ui`) or ids (`task:ui`); none: every declared task
        names: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Build what `bundle PROFILE` (or `task TASK`) would, then again whenever an input
    /// changes (one round at a time; Ctrl-C stops)
    #[command(
        after_long_help = "Examples:\n  cargo xtask watch                    what `cargo xtask bundle` builds, on every change\n  cargo xtask watch greeting -v        one task, saying why each round runs it"
    )]
    Watch(watch::WatchArgs),
    /// Say why a task would run, or why it last ran
    #[command(after_long_help = "Example:\n  cargo xtask explain greeting")]
    Explain {
        /// Task name (`ui`) or id (`task:ui`, `assemble:notes-desktop`)
        task: String,
    },
    /// Print the task graph
    #[command(
        after_long_help = "Examples:\n  cargo xtask graph --format mermaid\n  cargo xtask graph | dot -Tsvg > graph.svg"
    )]
    Graph {
        /// Output format (with --message-format json: a `graph` event carrying it)
        #[arg(long, value_enum, default_value_t = GraphFormatArg::Dot)]
        format: GraphFormatArg,
    },
    /// Analyze a scenario: dependencies, requirements, fitness per tier (0.00 to 1.00), swap
    /// suggestions (each with the fitness it adds, on the same scale)
    #[command(
        after_long_help = "Example:\n  cargo xtask analyze picker-wheel --tier desktop --swap postgres=sqlite"
    )]
    Analyze {
        /// Scenario name (its directory under the scenarios directory)
        scenario: String,
        #[command(flatten)]
        analysis: AnalysisArgs,
    },
    /// Print a scenario's dependency DAG
    #[command(
        after_long_help = "Examples:\n  cargo xtask dag notes-app --format mermaid\n  cargo xtask dag notes-app --format svg --swap postgres=sqlite > notes.svg"
    )]
    Dag {
        /// Scenario name (its directory under the scenarios directory)
        scenario: String,
        /// Output format (default: json; with --message-format json: a `dag` event carrying
        /// the DAG, or the text of an explicit --format)
        #[arg(long, value_enum)]
        format: Option<DagFormat>,
        /// Apply a swap first (FROM=TO); repeatable
        #[arg(long = "swap", value_name = "FROM=TO")]
        swaps: Vec<String>,
    },
    /// A scenario's fitness per deployment tier (0.00 to 1.00, the scale of min-fitness)
    #[command(
        after_long_help = "Example:\n  cargo xtask fitness notes-app --swap postgres=sqlite --swap redis=in-process"
    )]
    Fitness {
        /// Scenario name (its directory under the scenarios directory)
        scenario: String,
        #[command(flatten)]
        analysis: AnalysisArgs,
    },
    /// Secrets of a scenario, classified per tier; `--bundle` for the bundle-safe plan
    #[command(
        after_long_help = "Examples:\n  cargo xtask secrets notes-app --tier desktop\n  cargo xtask secrets notes-app --bundle --swap postgres=sqlite --swap redis=in-process\n  cargo xtask secrets classify postgres postgres_password --tier desktop"
    )]
    Secrets(pipeline::SecretsArgs),
    /// Print a profile's bundle.json (nothing is written)
    #[command(after_long_help = "Example:\n  cargo xtask assemble notes-desktop")]
    Assemble(pipeline::ProfileArg),
    /// Write dist/<profile>/bundle.json and bundle.json.sha256 (cached)
    #[command(after_long_help = "Example:\n  cargo xtask export notes-desktop")]
    Export(pipeline::ExportArgs),
    /// Write a profile's release files (SHA256SUMS, update manifests, release.json) from its packages already in dist/<profile>/packages/ (nothing is built)
    #[command(
        after_long_help = "Every platform's packages must be there: built here, or gathered from the runners that built them (the publish job of `cargo xtask ci github` downloads them, then runs this).\n\nExample:\n  cargo xtask publish notes-desktop"
    )]
    Publish(pipeline::PublishArgs),
    /// Validate bundle.toml, the task graph and every profile without building (pre-commit, CI)
    #[command(after_long_help = "Example:\n  cargo xtask check")]
    Check,
    /// List, show, create and change profiles in bundle.toml
    #[command(
        after_long_help = "Examples:\n  cargo xtask profile list\n  cargo xtask profile show notes-desktop\n  cargo xtask profile create wheel --scenario picker-wheel --tier desktop --swap postgres=sqlite\n  cargo xtask profile set wheel --platform win-x64"
    )]
    Profile {
        #[command(subcommand)]
        command: profile::ProfileCommand,
    },
    /// Toolchains and tools found here, and which platforms of each profile can be staged
    #[command(
        after_long_help = "Examples:\n  cargo xtask doctor\n  cargo xtask doctor --message-format json"
    )]
    Doctor,
    /// Stage a profile for this machine and start the runtime on it (Ctrl-C stops it)
    #[command(after_long_help = "Example:\n  cargo xtask run notes-desktop")]
    Run {
        /// Profile to run (default: workspace.default-profile)
        profile: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The thin client: the Electron wrapper without runtime or services, pointing at a
    /// deployed app (dist/<profile>/thin/), and its packages
    #[command(
        after_long_help = "Example:\n  cargo xtask thin-client notes-desktop --url https://notes.example.org/"
    )]
    ThinClient(thin::ThinArgs),
    /// Inspect and maintain the local cache
    #[command(
        after_long_help = "Examples:\n  cargo xtask cache stats\n  cargo xtask cache gc --max-size 2G"
    )]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, powershell)
    #[command(after_long_help = completions::EXAMPLES)]
    Completions(completions::CompletionsArgs),
    /// Write bundle.toml (one profile per scenario found) and platforms/ in an existing
    /// repository; never overwrites a file
    #[command(
        after_long_help = "Example:\n  cd my-vrooli-checkout && cargo xtask init && cargo xtask check"
    )]
    Init(init::InitArgs),
    /// Install or remove the git pre-commit hook that runs `cargo xtask check`
    #[command(
        after_long_help = "Examples:\n  cargo xtask hooks install      a failing `check` blocks the commit\n  cargo xtask hooks uninstall    removes the hook, if xbundle wrote it"
    )]
    Hooks {
        #[command(subcommand)]
        command: hooks::HooksCommand,
    },
    /// Write a CI workflow: `check`, a build per platform with the remote cache, a publish job
    #[command(
        after_long_help = "Example:\n  cargo xtask ci github    writes .github/workflows/xbundle.yml"
    )]
    Ci {
        #[command(subcommand)]
        command: ci::CiCommand,
    },
    /// Internal: what a remote worker runs for a package task (writes the artifact a
    /// serialized package plan describes, in the current directory); not for people
    #[command(name = "__package-remote", hide = true)]
    PackageRemote {
        /// The plan file, relative to the current directory
        plan: String,
    },
    /// Serve the HTTP API (the seed's /api/v1 endpoints, over this command line's own code)
    #[command(
        after_long_help = "Examples:\n  cargo xtask serve                              http://127.0.0.1:7870/\n  XBUNDLE_SERVE_TOKEN=… cargo xtask serve --addr 0.0.0.0:7870"
    )]
    Serve(serve::ServeArgs),
}

impl Command {
    /// Whether this command runs tasks here and now (not `--dry-run`, not through a server):
    /// its stat cache is loaded while bundle.toml is read.
    fn runs_tasks_here(&self) -> bool {
        match self {
            Command::Bundle { run, .. } | Command::Task { run, .. } | Command::Run { run, .. } => {
                !run.dry_run
            }
            Command::Watch(_) => true,
            _ => false,
        }
    }

    /// The options of a command that runs tasks.
    fn run_args(&self) -> Option<&BuildArgs> {
        match self {
            Command::Bundle { run, .. } | Command::Task { run, .. } | Command::Run { run, .. } => {
                Some(&run.build)
            }
            Command::ThinClient(args) => Some(&args.run.build),
            Command::Watch(args) => Some(&args.run),
            _ => None,
        }
    }
}

/// The options of the commands that run tasks once (`bundle`, `task`, `run`, `thin-client`):
/// how to build, and `--dry-run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Print the plan with each task's expected cache status; run nothing
    #[arg(long)]
    dry_run: bool,
    /// Run only the tasks whose inputs changed since a git ref, and the tasks downstream of
    /// them: git's changed files (commits since the base, staged, unstaged and untracked
    /// files) against each task's input globs and its recorded discovered inputs
    #[arg(long)]
    affected: bool,
    /// The ref --affected compares with (default: the merge-base of HEAD and origin/HEAD, else
    /// HEAD: the uncommitted changes)
    #[arg(long, value_name = "REF", requires = "affected")]
    base: Option<String>,
    #[command(flatten)]
    build: BuildArgs,
}

impl std::ops::Deref for RunArgs {
    type Target = BuildArgs;

    fn deref(&self) -> &BuildArgs {
        &self.build
    }
}

/// How to build: the options of every command that runs tasks, `watch` included.
#[derive(Debug, Args)]
struct BuildArgs {
    /// Number of parallel jobs (default: the cores + 2; 2 on one core)
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Ignore cache reads (results are still stored)
    #[arg(long)]
    force: bool,
    /// Stop starting tasks at the first failure
    #[arg(long)]
    fail_fast: bool,
    /// Download nothing: a `fetch:` task whose asset is not in the cache fails (also
    /// XBUNDLE_OFFLINE=1)
    #[arg(long)]
    offline: bool,
    /// Whose task output to print (on stderr, each line prefixed with its task's id)
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = OutputLogs::Full)]
    output_logs: OutputLogs,
    /// Order of task output: as it comes, or grouped per task
    #[arg(long, value_enum, value_name = "ORDER", default_value_t = LogOrder::Auto)]
    log_order: LogOrder,
    /// Write an HTML report of the run (timeline, cache hits and why, critical path) to
    /// <out>/xbundle-timings/timings.html
    #[arg(long)]
    timings: bool,
    /// Share results through this remote cache (http://, https://: the bazel-remote layout;
    /// overrides XBUNDLE_REMOTE_CACHE and [cache] remote); credentials from
    /// XBUNDLE_REMOTE_CACHE_TOKEN or XBUNDLE_REMOTE_CACHE_USER and XBUNDLE_REMOTE_CACHE_PASSWORD
    #[arg(long, value_name = "URL", conflicts_with = "no_remote_cache")]
    remote_cache: Option<String>,
    /// Fetch from the remote cache, never upload to it (also [cache] remote-read-only)
    #[arg(long, conflicts_with = "no_remote_cache")]
    remote_cache_read_only: bool,
    /// Use no remote cache in this run, whatever bundle.toml says
    #[arg(long)]
    no_remote_cache: bool,
    /// Run the tasks declared `remote = true` on this Remote Execution API server
    /// (grpc://HOST:PORT, grpcs://HOST[:PORT]; overrides [cache] remote-executor); unreachable:
    /// one warning, and they run locally. -j may then exceed the local cores: local tasks still
    /// run at most the default -j at once
    #[arg(long, value_name = "URL")]
    remote_executor: Option<String>,
}

#[derive(Debug, Args)]
struct AnalysisArgs {
    /// One tier (tier-2-desktop, 2, desktop, …); default: all
    #[arg(long)]
    tier: Option<String>,
    /// Apply a swap first (FROM=TO); repeatable
    #[arg(long = "swap", value_name = "FROM=TO")]
    swaps: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Entries and bytes in the cache
    Stats,
    /// Evict least recently used entries until the cache fits
    Gc {
        /// e.g. 500M, 2G, 1.5GiB, 1000000
        #[arg(long, value_name = "SIZE", value_parser = cache::parse_size)]
        max_size: u64,
    },
    /// Check every entry and blob; remove what is corrupt (exit 1 if anything was)
    Verify,
    /// Delete the cache and the workspace's build state
    Clean,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormatArg {
    Json,
    Dot,
    Mermaid,
}

/// How users call the command line: every usage line says it.
const BIN_NAME: &str = "cargo xtask";

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    // `cargo xtask` in every usage line, whatever the binary is called.
    let matches = Cli::command().bin_name(BIN_NAME).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    cli.jobs = cli.command.run_args().and_then(|run| run.jobs);
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let shell = Shell::new(cli.message_format, verbosity);
    match run(cli, &shell) {
        Ok(code) => ExitCode::from(code),
        Err(diagnostic) => {
            shell.error(&diagnostic);
            ExitCode::from(diagnostic.exit_code)
        }
    }
}

/// A loaded workspace: root, configuration and engine.
struct Workspace {
    root: Utf8PathBuf,
    config: BundleConfig,
    engine: Engine,
    /// The toolchains found here (probed lazily, cached in the state directory).
    tools: crate::toolchain::Toolchains,
}

fn find_root(explicit: Option<&Utf8Path>) -> Result<Utf8PathBuf, Diagnostic> {
    if let Some(root) = explicit {
        let root = root.canonicalize_utf8().map_err(|err| {
            Diagnostic::error(format!("--root {root}: {err}")).help("pass an existing directory")
        })?;
        return Ok(root);
    }
    let cwd = std::env::current_dir()
        .map_err(Diagnostic::from)
        .and_then(|dir| {
            Utf8PathBuf::from_path_buf(dir)
                .map_err(|dir| Diagnostic::error(format!("{} is not UTF-8", dir.display())))
        })?;
    cwd.ancestors()
        .find(|dir| dir.join(config::FILE_NAME).is_file())
        .map(Utf8Path::to_path_buf)
        .ok_or_else(|| {
            Diagnostic::error(format!(
                "could not find {} in {cwd} or any parent",
                config::FILE_NAME
            ))
            .help("run inside a repository that has a bundle.toml, or pass --root DIR")
        })
}

/// Finds the root, reads bundle.toml (with its path checks) and sets up the engine on the cache
/// [`BundleConfig::cache_location`] allows. Writes nothing.
fn load(cli: &Cli, force: bool, fail_fast: bool) -> Result<Workspace, Diagnostic> {
    load_with(cli, force, fail_fast, false)
}

/// [`load`], for a run that may not download (`--offline`: the engine's environment gets
/// `XBUNDLE_OFFLINE=1`, which fetch tasks read; it enters no key).
fn load_with(
    cli: &Cli,
    force: bool,
    fail_fast: bool,
    offline: bool,
) -> Result<Workspace, Diagnostic> {
    let root = find_root(cli.root.as_deref())?;
    let mut engine_config = EngineConfig::new(root.as_std_path());
    // A command that runs tasks loads the stat cache while bundle.toml is read and checked.
    let preload = cli
        .command
        .runs_tasks_here()
        .then(|| Engine::preload_stats(&engine_config));
    let path = root.join(config::FILE_NAME);
    let config = BundleConfig::load(&path, Utf8Path::new(config::FILE_NAME))?;
    engine_config.cache_dir = config.cache_location(&root)?.absolute.into_std_path_buf();
    if let Some(jobs) = cli.jobs {
        engine_config.jobs = jobs.max(1);
    }
    engine_config.protected = vec![config::FILE_NAME.to_string()];
    engine_config.force = force;
    engine_config.fail_fast = fail_fast;
    // The remote tier, for the commands that run tasks (nothing connects before a lookup).
    if let Some(build) = cli.command.run_args()
        && let Some(url) = &build.remote_cache
        && let Err(problem) = crate::remote::check_url(url)
    {
        // Checked here rather than by clap, whose message would repeat the URL (and any
        // credentials in it).
        return Err(
            Diagnostic::error(format!("--remote-cache {problem}")).help(crate::remote::URL_HELP)
        );
    }
    if let Some(build) = cli.command.run_args()
        && !build.no_remote_cache
        && build.remote_cache.is_none()
        && let Err(problem) = crate::remote::url_variable()
    {
        return Err(
            Diagnostic::error(format!("{} {problem}", crate::remote::URL_VARIABLE))
                .help(crate::remote::URL_HELP),
        );
    }
    if let Some(build) = cli.command.run_args()
        && let Some(settings) = crate::remote::Settings::resolve(
            &config.cache,
            build.remote_cache.as_deref(),
            build.remote_cache_read_only,
            build.no_remote_cache,
        )
    {
        engine_config.remote = Some(crate::remote::connect(&settings));
    }
    if let Some(build) = cli.command.run_args() {
        if let Some(url) = &build.remote_executor
            && let Err(problem) = crate::remote::exec::check_url(url)
        {
            return Err(Diagnostic::error(format!("--remote-executor {problem}"))
                .help(crate::remote::exec::URL_HELP));
        }
        engine_config.executor =
            crate::remote::exec::resolve(&config.cache, build.remote_executor.as_deref());
    }
    if offline {
        engine_config
            .env
            .insert(crate::assets::OFFLINE_VARIABLE.into(), "1".into());
    }
    let tools = crate::toolchain::Toolchains::new(
        root.as_std_path(),
        Some(&engine_config.state_dir),
        engine_config.env.clone(),
    );
    let engine = Engine::new(engine_config);
    check_places(&engine)?;
    if let Some(preload) = preload {
        engine.use_preloaded(preload);
    }
    Ok(Workspace {
        root,
        config,
        engine,
        tools,
    })
}

/// The engine's own directories (state, staging, ledger, cache, `cas/`, `ac/`) where they
/// exist: a link there (a repository can ship one, another user of a shared cache can make
/// one) is bad input, refused before anything is written (the stat cache loaded ahead is
/// read through the same places, which never follow a link).
fn check_places(engine: &Engine) -> Result<(), Diagnostic> {
    use engine::confine::ConfineError;
    let help = "xbundle never follows a link where it keeps its state or its cache (the link could lead anywhere, and xbundle writes and deletes there): remove the link, and xbundle creates a directory of its own; to keep the cache elsewhere, set XBUNDLE_CACHE_DIR or [cache] dir";
    match engine.check_places() {
        Ok(()) => Ok(()),
        Err(ConfineError::Symlink { path }) => Err(Diagnostic::error(format!(
            "`{path}` is a symbolic link where xbundle keeps its own files"
        ))
        .help(help)),
        Err(ConfineError::NotDirectory { path }) => Err(Diagnostic::error(format!(
            "`{path}` is not a directory, where xbundle keeps its own files"
        ))
        .help("xbundle keeps its state and its cache in directories of its own: point XBUNDLE_CACHE_DIR or [cache] dir at a directory, or move the file away (xbundle then creates the directory)")),
        Err(ConfineError::NotRegular { path, what }) => Err(Diagnostic::error(format!(
            "`{path}` is {what}, where xbundle keeps its lock file"
        ))
        .help("remove it (remove the link, if it is one): xbundle creates its lock file itself and never follows a link there")),
        Err(err) => Err(Diagnostic::internal(err.to_string())),
    }
}

fn run(cli: Cli, shell: &Shell) -> Result<u8, Diagnostic> {
    match &cli.command {
        Command::Bundle {
            profile,
            platforms,
            run,
        } => {
            let workspace = load_with(&cli, run.force, run.fail_fast, run.offline)?;
            if let Some(profile) = profile {
                crate::names::profile(&workspace.config, &workspace.root, profile)?;
            }
            // What `check` validates, `bundle` refuses to build without: one path for both.
            let plan = pipeline::validate(&workspace, shell)?;
            // The profile's pipeline and every declared task (a UI build, codegen, …); with no
            // profile at all, every task.
            let selected = profile
                .clone()
                .or(workspace.config.workspace.default_profile.clone());
            let profile = selected.and_then(|name| workspace.config.profile(&name).cloned());
            let bundles = match &profile {
                Some(profile) => plan
                    .bundles
                    .iter()
                    .find(|b| b.profile == profile.name)
                    .cloned(),
                None => None,
            };
            if let Some(bundles) = &bundles {
                for platform in platforms {
                    if !bundles.platforms.iter().any(|p| &p.platform == platform) {
                        let known = bundles.platforms.iter().map(|p| p.platform.as_str());
                        let declared = plan.context.platforms.iter().any(|p| &p.id == platform);
                        // A platform of platforms/ the profile does not target is no typo.
                        let help = if declared {
                            format!(
                                "add it to the profile: `cargo xtask profile set {} --platform {platform}`",
                                bundles.profile
                            )
                        } else {
                            crate::names::help(platform, "its platforms", known)
                        };
                        return Err(Diagnostic::error(format!(
                            "profile `{}` has no platform `{platform}`",
                            bundles.profile
                        ))
                        .help(help));
                    }
                }
            } else if !platforms.is_empty() {
                return Err(Diagnostic::error("--platform needs a profile")
                    .help("name a profile, or set [workspace] default-profile in bundle.toml"));
            }
            let targets = bundle_targets(
                &workspace,
                &plan,
                profile.as_ref(),
                bundles.as_ref(),
                platforms,
            );
            workspace.tools.save();
            let code = build::run_tasks(&workspace, &plan.graph, &targets, run, shell)?;
            if let Some(bundles) = &bundles
                && !run.dry_run
            {
                build::report_bundles(&workspace, bundles, platforms, code == 0, shell);
            }
            Ok(code)
        }
        Command::Task { names, run } => {
            let workspace = load_with(&cli, run.force, run.fail_fast, run.offline)?;
            let graph = plan::graph(&workspace.config, &workspace.root, &workspace.tools)?;
            build::run_tasks(&workspace, &graph, names, run, shell)
        }
        Command::Watch(args) => watch::watch(&cli, args, shell),
        Command::Explain { task } => {
            let workspace = load(&cli, false, false)?;
            build::explain(&workspace, task, shell)
        }
        Command::Graph { format } => {
            let workspace = load(&cli, false, false)?;
            let graph = plan::graph(&workspace.config, &workspace.root, &workspace.tools)?;
            let format = match format {
                GraphFormatArg::Json => GraphFormat::Json,
                GraphFormatArg::Dot => GraphFormat::Dot,
                GraphFormatArg::Mermaid => GraphFormat::Mermaid,
            };
            if shell.is_json() {
                let mut event = json!({"event": "graph", "format": format_name(format)});
                match format {
                    GraphFormat::Json => event["tasks"] = graph.to_json()["tasks"].take(),
                    _ => event["text"] = json!(graph.render(format)),
                }
                shell.json(&event);
            } else {
                shell.print(&graph.render(format));
            }
            Ok(0)
        }
        Command::Analyze { scenario, analysis } => {
            queries::analyze(&cli, scenario, analysis, shell)
        }
        Command::Dag {
            scenario,
            format,
            swaps,
        } => queries::dag(&cli, scenario, *format, swaps, shell),
        Command::Fitness { scenario, analysis } => {
            queries::fitness(&cli, scenario, analysis, shell)
        }
        Command::Profile { command } => profile::run(&cli, command, shell),
        Command::Secrets(args) => pipeline::secrets_command(&cli, args, shell),
        Command::Assemble(arg) => pipeline::assemble(&find_root(cli.root.as_deref())?, arg, shell),
        Command::Export(args) => {
            let workspace = load(&cli, args.force, false)?;
            pipeline::export(&workspace, &args.profile, shell)
        }
        Command::Publish(args) => {
            let workspace = load(&cli, args.force, false)?;
            pipeline::publish(&workspace, &args.profile, shell)
        }
        Command::Check => pipeline::check(&load(&cli, false, false)?, shell),
        Command::Doctor => doctor::doctor(&load(&cli, false, false)?, shell),
        Command::Run { profile, run } => {
            let workspace = load_with(&cli, run.force, run.fail_fast, run.offline)?;
            doctor::run(&workspace, profile.as_deref(), run, shell)
        }
        Command::ThinClient(args) => thin::thin_client(&cli, args, shell),
        Command::Cache { command } => {
            let workspace = load(&cli, false, false)?;
            cache::cache(&workspace, command, shell)
        }
        Command::Completions(args) => completions::completions(args, shell),
        Command::Init(args) => init::init(&cli, args, shell),
        Command::Hooks { command } => hooks::hooks(&cli, command, shell),
        Command::Ci { command } => ci::ci(&load(&cli, false, false)?, command, shell),
        Command::PackageRemote { plan } => match crate::package::run_remote(plan) {
            Ok(()) => Ok(0),
            Err(message) => Err(Diagnostic::error(message)),
        },
        Command::Serve(args) => serve::serve(&cli, args, shell),
    }
}

/// What `bundle` builds for `profile` (its pipeline on `platforms`, all when empty, and every
/// declared task); with no profile, nothing named: every task. `watch PROFILE` builds the same.
fn bundle_targets(
    workspace: &Workspace,
    plan: &plan::Plan,
    profile: Option<&config::Profile>,
    bundles: Option<&crate::bundles::ProfilePlan>,
    platforms: &[String],
) -> Vec<String> {
    let (Some(profile), Some(bundles)) = (profile, bundles) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = workspace
        .config
        .tasks
        .iter()
        .map(|t| format!("task:{}", t.name))
        .collect();
    // A scenario that does not exist has no analysis task: the profile's own tasks say what
    // is wrong with it.
    let analyze = format!("analyze:{}", profile.decl.scenario.get_ref());
    if plan
        .graph
        .get(&engine::TaskId::new(analyze.clone()))
        .is_some()
    {
        targets.push(analyze);
    }
    targets.push(crate::stages::secrets_id(&profile.name).to_string());
    targets.extend(bundles.targets(platforms));
    targets
}

fn format_name(format: GraphFormat) -> &'static str {
    match format {
        GraphFormat::Json => "json",
        GraphFormat::Dot => "dot",
        GraphFormat::Mermaid => "mermaid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
