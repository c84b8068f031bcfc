//! The `slotgate` command line (DESIGN.md §5): serve, demo, check, route, mock-backend.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use slotgate::config::Config;
use slotgate::mock::{self, MockArgs, MockConfig};
use slotgate::routing::{explain, routing_table, ExplainAt, LiveState, RequestFacts, Snapshot};
use slotgate::server::Server;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "slotgate",
    version,
    about = "Front door for inference hosts: one address, every model slot"
)]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (overrides SLOTGATE_LOG), e.g. `info`, `slotgate=debug`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the front door.
    Serve {
        /// The config file (`slotgate.toml`).
        #[arg(long)]
        config: PathBuf,
        /// A tuning profile replacing `[tuning]` (e.g. `tuning/gpu-host.toml`).
        #[arg(long)]
        tuning: Option<PathBuf>,
    },
    /// Run the front door on a built-in config with built-in mock model servers.
    Demo {
        /// Front-door address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Admin address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
    },
    /// Validate a config and print the routing table.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Explain the routing decision for one request, step by step.
    Route {
        #[arg(long)]
        config: PathBuf,
        /// The request's model id (omit to see the path default).
        #[arg(long)]
        model: Option<String>,
        /// The request path.
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
        /// A session (affinity) key, as the `x-session-id` header would carry it: which replica
        /// pool member it sticks to.
        #[arg(long)]
        session: Option<String>,
    },
    /// An OpenAI-compatible fake model server for demos, tests and benchmarks.
    MockBackend(MockArgs),
}

/// Installs the subscriber. Events are formatted on the emitting thread; workers batch their
/// lines (see `slotgate::logging`), other threads write each line at once.
fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_env("SLOTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colour codes only for a terminal: a journal or a file gets plain text (and the formatter
    // skips the escape sequences, which cost on every access-log line).
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(slotgate::logging::Output);
    // The decision log writes its own lines in the very same layout (no colours to match).
    let plain = !std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => {
            b.init();
            slotgate::logging::set_direct(plain.then_some(slotgate::logging::Direct::Text));
        }
        LogFormat::Json => {
            b.json().init();
            slotgate::logging::set_direct(plain.then_some(slotgate::logging::Direct::Json));
        }
    }
}

/// The demo's config: a `chat` container serving `demo-chat` and an `embed` container, both
/// in-process mocks on free loopback ports.
fn demo_config(addr: &str, admin: &str, chat: &str, embed: &str) -> String {
    format!(
        r#"[listen]
addr = "{addr}"
admin = "{admin}"

[routing]
default_slot = "chat"

[[upstream]]
name = "chat"
kind = "container"
url = "{chat}"
probe_interval_ms = 500

[[upstream]]
name = "embed"
kind = "container"
url = "{embed}"
probe_interval_ms = 500

[[upstream]]
name = "local"
kind = "composite"

[registry]
"demo-chat" = "local"
"#
    )
}

fn demo(addr: &str, admin: &str) -> Result<(), String> {
    let chat = mock::spawn(MockConfig {
        models: vec!["demo-chat".into()],
        tokens: 24,
        tokens_per_sec: 8.0,
        ttft_ms: 300,
        ..MockConfig::default()
    })
    .map_err(|e| format!("starting the chat mock: {e}"))?;
    let embed = mock::spawn(MockConfig {
        models: vec!["demo-embed".into()],
        ..MockConfig::default()
    })
    .map_err(|e| format!("starting the embed mock: {e}"))?;
    let mut text = demo_config(addr, admin, &chat.base_url(), &embed.base_url());
    // The demo serves mocks: opening it beyond loopback is the user's explicit `--addr`, so it
    // stays open (with a warning) where `serve` would demand keys.
    let loopback = addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if !loopback {
        eprintln!(
            "warning: the demo on {addr} answers anyone who can reach it (no front-door keys)"
        );
        text.push_str("\n[auth]\nallow_unauthenticated = true\n");
    }
    let cfg = Config::from_toml_str(&text, None).map_err(|e| e.to_string())?;
    let server = Server::start(cfg).map_err(|e| format!("starting slotgate: {e}"))?;
    let a = server.addr;
    println!(
        "slotgate demo: front door on http://{a}  (driver: {})",
        server.driver.as_str()
    );
    if let Some(ad) = server.admin_addr {
        println!("admin API on http://{ad}");
    }
    println!(
        "\nTry (tokens arrive one by one):\n\n  curl -N http://{a}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"demo-chat\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\n  curl http://{a}/v1/models\n  curl http://{a}/v1/embeddings -H 'content-type: application/json' -d '{{\"input\":\"hello\"}}'\n  curl -i http://{a}/v1/chat/completions -d '{{\"model\":\"no-such-model\"}}'   # capability routing, default anchor\n"
    );
    if let Some(ad) = server.admin_addr {
        println!("  curl 'http://{ad}/admin/route?model=demo-chat&path=/v1/chat/completions'\n  curl http://{ad}/admin/upstreams\n");
    }
    println!("Ctrl-C stops.");
    server.run_until_signalled().map_err(|e| e.to_string())?;
    drop(chat);
    drop(embed);
    Ok(())
}

fn load(path: &std::path::Path, tuning: Option<&std::path::Path>) -> Result<Config, String> {
    Config::load(path, tuning)
        .map_err(|e| format!("{}: config refused, {}:\n{e}", path.display(), e.count()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve { config, tuning } => {
            let cfg = load(&config, tuning.as_deref())?;
            let server = Server::start(cfg).map_err(|e| format!("starting slotgate: {e}"))?;
            server.run_until_signalled().map_err(|e| e.to_string())
        }
        Cmd::Demo { addr, admin } => demo(&addr, &admin),
        Cmd::Check { config } => {
            let cfg = load(&config, None)?;
            let mut missing = Vec::new();
            for u in &cfg.upstreams {
                if let Some(var) = u.auth.as_ref().and_then(|a| a.env.as_deref()) {
                    if std::env::var_os(var).is_none() {
                        missing.push(format!(
                            "upstream '{}': environment variable {var} is not set",
                            u.name
                        ));
                    }
                }
            }
            let snap = Snapshot::build(Arc::new(cfg), &LiveState::default(), 1);
            print!("{}", routing_table(&snap));
            if missing.is_empty() {
                println!("config OK");
                Ok(())
            } else {
                Err(missing.join("\n"))
            }
        }
        Cmd::Route {
            config,
            model,
            path,
            session,
        } => {
            let cfg = load(&config, None)?;
            let snap = Snapshot::build(Arc::new(cfg), &LiveState::default(), 1);
            let facts = RequestFacts::new("POST", &path).with_model(model.as_deref());
            let at =
                ExplainAt::new(slotgate::admission::clock_ms()).with_session(session.as_deref());
            print!("{}", explain(&snap, &facts, at));
            Ok(())
        }
        Cmd::MockBackend(args) => {
            let cfg: MockConfig = args.into();
            mock::run(cfg).map_err(|e| format!("mock-backend: {e}"))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    slotgate::logging::start_writer();
    let code = match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slotgate: {e}");
            ExitCode::FAILURE
        }
    };
    slotgate::logging::drain();
    code
}
