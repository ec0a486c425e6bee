//! `vpcswitch`: the TAP switch.
//!
//! * `vpcswitch run -c FILE [--host NAME] [--control-socket PATH] [--metrics ADDR]` runs
//!   the switch; SIGHUP or `ctl reload` re-reads FILE (the flags still win);
//!   SIGINT/SIGTERM stop it (TAPs it created without `netns` disappear with it; TAPs
//!   with `netns` stay in the guests' namespaces for the next start). `--host` names the
//!   host this switch runs on when the network spans hosts (SPEC 10); the other two let
//!   several switches on one machine share one network file.
//! * `vpcswitch run --etcd URL[,URL...] --host NAME [--lease-ttl SECS]` runs the switch
//!   on the network in the store (SPEC 11, docs/store.md): it starts from it, applies
//!   every change as a reload (SIGHUP and `ctl reload` read the store again), registers
//!   its host with a lease and treats the ports of hosts whose lease expired as down.
//! * `vpcswitch apply -f FILE --etcd URL[,URL...] [--dry-run]` validates FILE whole
//!   (every error, as `check`) and writes it to the store in one transaction; with
//!   `--dry-run` it prints the diff and writes nothing.
//! * `vpcswitch check -c FILE [--host NAME]` validates FILE (as run on host NAME) and
//!   prints every error; exit 0 only when valid.
//! * `vpcswitch ctl [--socket S] [--json] CMD [ARGS]` talks to a running switch:
//!   `ports`, `vips`, `eips`, `neighbors`, `routes`, `stats`, `hosts`, `trace PORT HEXFRAME`, `reload`.
//! * `vpcswitch demo` builds a demo in network namespaces, shows a failover, cleans up.
//!
//! Exit codes: 0 ok, 1 invalid configuration or failed command, 2 usage or I/O error,
//! 3 the switch stopped itself because a worker panicked (fail fast: restart it).
//!
//! Worker-panic policy: fail fast. A panicking worker stops every worker (no forwarding
//! with a dead worker), the reason is logged, and the process exits 3 so its supervisor
//! (systemd `Restart=on-failure`) restarts it with the configuration file.

mod control;
mod deadline;
mod demo;
mod listen;
mod metrics_http;
mod notify;
mod overrides;
mod ping_gap;
mod running;
#[cfg(test)]
mod scale;
mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use vpcswitch::linux::{one_line, Host, LinuxError};
use vpcswitch::model::Config;

pub use overrides::Overrides;
pub use running::Running;

/// Default control socket when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/vpcswitch.sock";

#[derive(Parser)]
#[command(
    name = "vpcswitch",
    version,
    about = "A userspace virtual switch for cloud VPCs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// When text logs carry ANSI colours.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogColor {
    /// only when stderr is a terminal (and `NO_COLOR` is not set)
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switch.
    Run {
        /// configuration file (TOML)
        #[arg(short, long, required_unless_present = "etcd", conflicts_with = "etcd")]
        config: Option<PathBuf>,
        /// take the network from the etcd cluster at these client URLs (comma-separated)
        /// instead of a file, and follow it (SPEC 11)
        #[arg(long, value_name = "URL[,URL...]")]
        etcd: Option<String>,
        /// with --etcd: the TTL of this host's lease, in seconds (SPEC 11.3)
        #[arg(long, value_name = "SECS", default_value_t = 3)]
        lease_ttl: u64,
        /// log format
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// colour in text logs: auto (only when stderr is a terminal), always, never
        #[arg(long, value_enum, default_value = "auto")]
        log_color: LogColor,
        /// the host this switch runs on, one of the file's [[hosts]] (wins over
        /// `[switch] host`; kept across reloads)
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// control socket (wins over `[switch] control_socket`)
        #[arg(long, value_name = "PATH")]
        control_socket: Option<PathBuf>,
        /// address:port of the Prometheus metrics (wins over `[switch] metrics`)
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// port slots, fixed for the switch's life: every port of the network counts,
        /// on other hosts too [default: 4096, or twice the network's ports at start]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
        max_ports: Option<u32>,
        /// host slots, fixed for the switch's life [default: 256, or twice the
        /// network's hosts at start]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
        max_hosts: Option<u32>,
    },
    /// Validate a network file and write it to the store in one transaction (SPEC 11.1).
    Apply {
        /// the network (TOML)
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// the etcd cluster's client URLs (comma-separated)
        #[arg(long, value_name = "URL[,URL...]")]
        etcd: String,
        /// print what would change, write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a configuration file and print every error.
    Check {
        /// configuration file (TOML)
        #[arg(short, long)]
        config: PathBuf,
        /// validate it as run on this host, one of its [[hosts]] (as `run --host`)
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Query or command a running switch (`vpcswitch ctl list-commands`).
    Ctl(control::cli::CtlArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// the shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (vpcswitch.1 and one per subcommand) into a directory.
    Man {
        /// the directory (created if missing)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Build a demo in network namespaces (two subnets, a keepalived VIP, a peered
    /// VPC), show traffic and a live failover, and clean up. Needs root.
    Demo,
}

/// A command line clap refuses: as clap says it (help and version are not errors),
/// except that `ctl --json` answers JSON on every outcome, this one too
/// (`{"ok": false, "error": ...}` on stdout, exit 2: docs/ctl-json.md).
fn usage_error(e: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let ctl_json = args.get(1).is_some_and(|a| a == "ctl") && args.iter().any(|a| a == "--json");
    if !ctl_json || !e.use_stderr() {
        e.exit()
    }
    let msg = e.render().to_string();
    let first = msg.lines().next().unwrap_or("bad usage");
    control::client_fail_json(first, 2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    match cli.cmd {
        Cmd::Check { config, host } => match (Overrides {
            host,
            ..Default::default()
        })
        .load(&config)
        {
            Ok(c) => {
                let hosts = overrides::placement_summary(&c);
                println!(
                    "{}: valid ({} VPCs, {} subnets, {} ports, {} VIPs{}{hosts})",
                    config.display(),
                    c.vpcs.len(),
                    c.subnets.len(),
                    c.ports.len(),
                    c.vips.len(),
                    if hosts.is_empty() { "" } else { "; " },
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(1)
            }
        },
        Cmd::Run {
            config,
            etcd,
            lease_ttl,
            log_format,
            log_color,
            host,
            control_socket,
            metrics,
            max_ports,
            max_hosts,
        } => {
            init_logs(log_format, log_color);
            let o = Overrides {
                host,
                control_socket,
                metrics,
            };
            let source = match (config, etcd) {
                (_, Some(urls)) => Source::Store {
                    endpoints: split_urls(&urls),
                    lease_ttl: Duration::from_secs(lease_ttl),
                },
                (Some(path), None) => Source::File(path),
                // clap requires one of them
                (None, None) => return ExitCode::from(2),
            };
            run(
                source,
                o,
                Sizing {
                    max_ports,
                    max_hosts,
                },
            )
        }
        Cmd::Apply {
            file,
            etcd,
            dry_run,
        } => apply(&file, &split_urls(&etcd), dry_run),
        Cmd::Demo => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                    eprintln!("cannot install signal handlers: {e}");
                    return ExitCode::from(2);
                }
            }
            demo::run(stop)
        }
        Cmd::Ctl(a) => control::cli::run(a),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "vpcswitch",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Cmd::Man { dir } => match man_pages(&dir) {
            Ok(n) => {
                println!("{n} man pages written to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot write the man pages to {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
    }
}

/// `vpcswitch man DIR`: vpcswitch.1, and vpcswitch-SUB.1 for every subcommand and
/// vpcswitch-ctl-SUB.1 for every ctl command. Returns how many were written.
fn man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    fn write(dir: &std::path::Path, name: &str, cmd: clap::Command) -> std::io::Result<usize> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)?;
        let mut n = 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            n += write(dir, &sub_name, sub.clone().name(sub_name.clone()))?;
        }
        Ok(n)
    }
    let mut cmd = Cli::command();
    cmd.build();
    write(dir, "vpcswitch", cmd)
}

fn init_logs(f: LogFormat, color: LogColor) {
    use std::io::IsTerminal;
    use tracing_subscriber::field::MakeExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = match color {
        LogColor::Always => true,
        LogColor::Never => false,
        LogColor::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if f == LogFormat::Json {
        // JSON strings escape newlines and control characters already
        b.json().init();
    } else {
        // one line per event: a value with a newline (an error listing several
        // problems) or another control character is escaped, never written raw
        let fields = tracing_subscriber::fmt::format::debug_fn(
            |w: &mut tracing_subscriber::fmt::format::Writer<'_>,
             field: &tracing::field::Field,
             value: &dyn std::fmt::Debug| {
                let v = escape_controls(&format!("{value:?}"));
                if field.name() == "message" {
                    write!(w, "{v}")
                } else {
                    write!(w, "{}={v}", field.name())
                }
            },
        )
        .delimited(" ");
        b.fmt_fields(fields).init();
    }
}

/// `s` on one line: newlines, carriage returns, tabs and other control characters
/// (ESC included: no terminal escapes from a value) written as escapes.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Reads and validates a configuration file; the error text lists every problem.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}\n", path.display()))?;
    Config::from_toml_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `--etcd a,b,c`: the URLs, trimmed, empty ones dropped.
fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// `vpcswitch apply`: exit 0 written (or nothing to write, or a dry run), 1 the file
/// is invalid or the store changed meanwhile (conflict), 2 the store cannot be used.
fn apply(file: &Path, endpoints: &[String], dry_run: bool) -> ExitCode {
    // validated whole, every error listed, before the store is even contacted
    let cfg = match load(file) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    let store = match vpcswitch_store::Store::connect(endpoints) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    let started = running::unix_us(std::time::SystemTime::now());
    match store.apply(&cfg, dry_run) {
        Ok(a) => {
            for c in &a.changes {
                println!("{c}");
            }
            let n = a.changes.len();
            if dry_run {
                println!(
                    "dry run: {n} change(s) against revision {}; nothing written",
                    a.from
                );
            } else if a.wrote {
                // when the read and the transaction began: the switches' reload times
                // compare with it (`ctl stats` store.applied_unix_us; docs/benchmarks.md)
                println!(
                    "applied: {n} change(s), revision {} -> {} ({} ms; sent at unix_us {started})",
                    a.from,
                    a.revision,
                    t0.elapsed().as_millis()
                );
            } else {
                println!(
                    "no change: the store holds this network (revision {})",
                    a.from
                );
            }
            ExitCode::SUCCESS
        }
        Err(e @ vpcswitch_store::StoreError::Conflict { .. }) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Where `run` takes its network from.
enum Source {
    /// a file (SIGHUP re-reads it)
    File(PathBuf),
    /// the store (SPEC 11), followed
    Store {
        endpoints: Vec<String>,
        lease_ttl: Duration,
    },
}

/// `run --max-ports/--max-hosts`: the runtime's slots, when given.
struct Sizing {
    max_ports: Option<u32>,
    max_hosts: Option<u32>,
}

impl Sizing {
    /// The runtime's options for `cfg`: what was given, else the runtime's default or
    /// twice what `cfg` has, whichever is more (so a large network starts, and can grow
    /// by reloads, without an option).
    fn options(&self, cfg: &Config) -> vpcswitch::runtime::Options {
        let d = vpcswitch::runtime::Options::default();
        let ports = cfg.ports.len() + usize::from(cfg.uplink.is_some());
        vpcswitch::runtime::Options {
            max_ports: self
                .max_ports
                .map_or(d.max_ports.max(2 * ports), |n| n as usize),
            max_hosts: self
                .max_hosts
                .map_or(d.max_hosts.max(2 * cfg.hosts.len()), |n| n as usize),
            ..d
        }
    }
}

fn run(source: Source, overrides: Overrides, sizing: Sizing) -> ExitCode {
    // process_start_time_seconds
    metrics_http::started_at();
    let (cfg, path, store) = match source {
        Source::File(path) => match overrides.load(&path) {
            Ok(c) => (c, path, None),
            Err(e) => {
                eprint!("{e}");
                return ExitCode::from(1);
            }
        },
        Source::Store {
            endpoints,
            lease_ttl,
        } => {
            let store = match vpcswitch_store::Store::connect(&endpoints) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start: {e}");
                    return ExitCode::from(2);
                }
            };
            let stored = match store.load() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start: {e}");
                    return ExitCode::from(1);
                }
            };
            let cfg = match overrides.apply(stored.config.clone()) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("store revision {}: {e}", stored.revision);
                    return ExitCode::from(1);
                }
            };
            (cfg, PathBuf::new(), Some((store, stored, lease_ttl)))
        }
    };
    let opts = sizing.options(&cfg);
    let switch = match Host::start_with(&cfg, opts.clone()) {
        Ok(s) => s,
        Err(e @ LinuxError::Backend { .. }) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            use vpcswitch::runtime::RuntimeError::{TooManyHosts, TooManyPorts};
            let hint = match &e {
                LinuxError::Runtime(TooManyPorts { .. }) => " (set it with --max-ports)",
                LinuxError::Runtime(TooManyHosts { .. }) => " (set it with --max-hosts)",
                _ => "",
            };
            eprintln!("cannot start: {e}{hint}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        workers = switch.workers(),
        ports = cfg.ports.len(),
        vips = cfg.vips.len(),
        host = cfg.local_host().unwrap_or("-"),
        max_ports = opts.max_ports,
        max_hosts = opts.max_hosts,
        "switch started"
    );
    let mut running = Running::new(switch, path).with_overrides(overrides);
    let mut follow = None;
    if let Some((store, stored, ttl)) = store {
        tracing::info!(
            store = store.endpoints(),
            revision = stored.revision,
            generation = stored.generation,
            "network read from the store"
        );
        match store::attach(running, store, &stored, ttl) {
            Ok((r, rx)) => {
                running = r;
                follow = Some(rx);
            }
            Err(e) => {
                eprintln!("cannot follow the store: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let running = Arc::new(running);
    // VIP moves, ports down and up, a worker failure: logged as the switch reports them
    if let Err(e) = running.log_events() {
        eprintln!("cannot start the event logger: {e}");
        return ExitCode::from(2);
    }
    if let Some(rx) = follow {
        store::spawn_follow(&running, rx)
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the store thread"));
    }
    // wakes the control and metrics accept threads at stop (no path on disk involved)
    let stop = match listen::Stopper::new() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot create the stop event: {e}");
            return ExitCode::from(2);
        }
    };
    let mut metrics = None;
    if let Some(addr) = &cfg.switch.metrics {
        match metrics_http::serve(addr, running.clone(), stop.clone()) {
            Ok((a, h)) => {
                tracing::info!(address = %a, "metrics served at http://{a}/metrics");
                metrics = Some(h);
            }
            Err(e) => {
                eprintln!("cannot serve metrics on {addr}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let socket = cfg
        .switch
        .control_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let server = match control::serve(&socket, running.clone(), stop.clone()) {
        Ok(h) => h,
        Err(e) => {
            stop.stop();
            eprintln!("cannot listen on {}: {e}", socket.display());
            return ExitCode::from(2);
        }
    };
    tracing::info!(socket = %socket.display(), "control socket ready");
    // systemd (sd_notify): ready now that the control socket answers
    let notifier = Arc::new(notify::Notifier::from_env());
    let status = |r: &Running| {
        let snap = r.switch.snapshot();
        format!(
            "forwarding: {} ports here, generation {}",
            snap.config.local_port_names().count(),
            snap.generation
        )
    };
    if let Some(n) = notifier.as_ref() {
        n.ready(&status(&running));
    }
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            stop.stop();
            server.finish();
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    // fail fast: a worker panic stops the switch; exit 3 so a supervisor restarts us.
    // The monitor holds the switch: it must let go at once at stop (dropping
    // `monitor_stop` wakes it), or the stop path would wait up to a tick for it.
    let (monitor_stop, monitor_wake) = std::sync::mpsc::channel::<()>();
    {
        let running = running.clone();
        let notifier = notifier.clone();
        std::thread::spawn(move || {
            let mut last_watchdog = Instant::now();
            for tick in 0u64.. {
                match monitor_wake.recv_timeout(Duration::from_millis(200)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if running.stopping.load(Ordering::SeqCst) {
                    return;
                }
                // a failed switch is reported (and the process stopped) by the event
                // logger (Running::log_events); systemd's watchdog stops hearing from us
                if running.switch.health().is_err() {
                    return;
                }
                // systemd's watchdog hears from us only while the workers are healthy
                if let Some((n, every)) = notifier
                    .as_ref()
                    .as_ref()
                    .and_then(|n| Some((n, n.watchdog_every()?)))
                {
                    if last_watchdog.elapsed() >= every {
                        n.watchdog();
                        last_watchdog = Instant::now();
                    }
                }
                // a TAP that went away and came back is picked up again
                if tick % 5 == 4 {
                    running.switch.reopen_returned();
                }
            }
        });
    }
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            tracing::info!("SIGHUP: reloading");
            if let Some(n) = notifier.as_ref() {
                n.reloading();
            }
            let r = running.reload();
            // Type=notify-reload: the reload is over, done or refused (the running
            // configuration stays either way)
            if let Some(n) = notifier.as_ref() {
                match r {
                    Ok(_) => n.ready(&status(&running)),
                    Err(e) => n.ready(&format!(
                        "{}; last reload refused: {}",
                        status(&running),
                        one_line(&e)
                    )),
                }
            }
        } else {
            tracing::info!(signal = sig, "stopping");
            break;
        }
    }
    drop(monitor_stop);
    if let Some(n) = notifier.as_ref() {
        n.stopping();
    }
    ExitCode::from(shutdown(running, &stop, Some(server), metrics))
}

/// How long the stop path waits for control and metrics connections still being served
/// (a request being read or answered; capture and drop streams end at once).
const CONNECTIONS_GRACE: Duration = Duration::from_secs(1);

/// Exit status: the switch stopped normally.
pub const EXIT_OK: u8 = 0;
/// Exit status: a worker panicked and the switch stopped itself (fail fast).
pub const EXIT_WORKER_PANIC: u8 = 3;

/// The stop path of `run`: wakes and joins the control and metrics accept threads (by
/// `stop`, not through any socket file), ends streams and the monitor, waits at most
/// [`CONNECTIONS_GRACE`] for connections being served, stops the workers and returns
/// the exit status. The worker-panic check always runs, whether or not the workers could
/// be joined: [`EXIT_WORKER_PANIC`] when a worker panicked, else [`EXIT_OK`].
fn shutdown(
    running: Arc<Running>,
    stop: &listen::Stopper,
    server: Option<control::Server>,
    metrics: Option<JoinHandle<()>>,
) -> u8 {
    running.stopping.store(true, Ordering::SeqCst);
    store::leave(&running);
    stop.stop();
    if let Some(s) = server {
        s.finish();
    }
    if let Some(m) = metrics {
        let _ = m.join();
    }
    let until = Instant::now() + CONNECTIONS_GRACE;
    let mut running = running;
    let (health, panicked) = loop {
        match Arc::try_unwrap(running) {
            Ok(r) => {
                let health = r.switch.health();
                break (health, r.switch.into_switch().stop());
            }
            Err(r) if Instant::now() < until => {
                running = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(r) => {
                // the switch's last holders (connection threads) are gone with the
                // process; its state is checked all the same
                tracing::warn!(
                    connections = Arc::strong_count(&r) - 1,
                    "control or metrics connections still open at stop; not waiting for them"
                );
                break (r.switch.health(), 0);
            }
        }
    };
    let status = exit_status(&health, panicked);
    if status == EXIT_WORKER_PANIC {
        tracing::error!(
            panicked,
            reason = %health.err().map(|w| one_line(&w)).unwrap_or_default(),
            "workers had panicked; exiting with status 3"
        );
    } else {
        tracing::info!("stopped");
    }
    status
}

/// The exit status of a stopped switch, from its health and the number of workers
/// found panicked when joined: a panic, seen either way, is [`EXIT_WORKER_PANIC`].
pub fn exit_status(health: &Result<(), String>, panicked: usize) -> u8 {
    if health.is_err() || panicked > 0 {
        EXIT_WORKER_PANIC
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks of every command and option (names, groups,
    /// conflicts), which otherwise only fail when a user hits them.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
    use vpcswitch::backend::{
        Backend, BackendError, PacketBuf, PortQueue, TxResult, WorkerBufs, WorkerMem,
    };

    /// A device whose queue panics on its first poll (fault injection, as in the
    /// runtime's a_worker_panic_stops_the_switch_and_says_why).
    struct Panics;
    struct PanicQueue;
    impl PortQueue for PanicQueue {
        fn rx_burst(&mut self, _: &mut WorkerBufs, _: &mut Vec<PacketBuf>, _: usize) -> usize {
            panic!("injected fault in rx_burst");
        }
        fn tx_burst(&mut self, _: &mut WorkerBufs, b: &mut Vec<PacketBuf>) -> TxResult {
            let sent = b.len();
            b.clear();
            TxResult {
                sent,
                ..Default::default()
            }
        }
    }
    impl Backend for Panics {
        fn describe(&self) -> String {
            "panics".into()
        }
        fn queues(&mut self, w: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
            Ok(w.iter()
                .map(|_| Box::new(PanicQueue) as Box<dyn PortQueue>)
                .collect())
        }
    }

    /// The binary's wrapping of a switch on memory backends; p2's device panics its
    /// worker when `panic` is set.
    fn running(panic: bool) -> Arc<Running> {
        let c = vpcswitch::model::ConfigBuilder::new()
            .workers(1)
            .vpc("a", &["10.0.0.0/16"])
            .subnet("a1", "a", "10.0.1.0/24")
            .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
            .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
            .build()
            .unwrap();
        let (mut b, _g) = vpcswitch::runtime::memory_backends(&c, 64);
        if panic {
            b.retain(|(n, _)| n != "p2");
            b.push(("p2".into(), Box::new(Panics)));
        }
        let sw = vpcswitch::runtime::Switch::start(&c, b).unwrap();
        if panic {
            let t0 = Instant::now();
            while sw.health().is_ok() {
                assert!(t0.elapsed() < Duration::from_secs(5), "no panic");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Arc::new(Running::new(
            Host::new(sw),
            PathBuf::from("/nonexistent/vpcswitch.toml"),
        ))
    }

    /// Issue 22, docs/operations.md "Stopping and exit codes": a worker that panicked
    /// before the stop makes the exit status 3, even when the switch cannot be joined
    /// because a connection still holds it, and the stop stays bounded. Before the fix
    /// the panic was looked for only when the switch could be joined, which it never
    /// could (the monitor thread held it): the status was 0 unless the monitor had
    /// seen the panic first.
    #[test]
    fn a_worker_panic_exits_3_even_with_a_connection_open_at_stop() {
        let r = running(true);
        let connection = r.clone();
        let stop = listen::Stopper::new().unwrap();
        let t0 = Instant::now();
        assert_eq!(shutdown(r, &stop, None, None), EXIT_WORKER_PANIC);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(stop.stopped());
        assert!(connection.stopping.load(Ordering::SeqCst));
        // and when the switch can be joined
        let r = running(true);
        let stop = listen::Stopper::new().unwrap();
        assert_eq!(shutdown(r, &stop, None, None), EXIT_WORKER_PANIC);
    }

    /// Issue 22: a healthy switch stops with status 0, joined or not.
    #[test]
    fn a_healthy_switch_exits_0() {
        let r = running(false);
        let stop = listen::Stopper::new().unwrap();
        assert_eq!(shutdown(r, &stop, None, None), EXIT_OK);
        let r = running(false);
        let connection = r.clone();
        let stop = listen::Stopper::new().unwrap();
        assert_eq!(shutdown(r, &stop, None, None), EXIT_OK);
        drop(connection);
    }

    /// docs/operations.md: the exit status of a stopped switch.
    #[test]
    fn exit_status_maps_a_panic_seen_either_way_to_3() {
        assert_eq!(exit_status(&Ok(()), 0), 0);
        assert_eq!(exit_status(&Err("worker 0 panicked".into()), 0), 3);
        assert_eq!(exit_status(&Ok(()), 1), 3);
    }

    /// docs/operations.md "Logs": one line per event, whatever a value holds.
    #[test]
    fn log_values_are_one_line_without_terminal_escapes() {
        assert_eq!(escape_controls("a\nb\x1b[31mc\r"), "a\\nb\\u{1b}[31mc\\r");
        assert_eq!(
            one_line("f: 2 error(s):\n  - port \"a\": x\n  - vip \"b\": y\n"),
            "f: 2 error(s): port \"a\": x; vip \"b\": y"
        );
    }
}
