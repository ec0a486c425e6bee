//! `vpcswitch ctl` on the command line: one clap subcommand per control command, so
//! options go anywhere (`ctl ports --json`, `ctl --json ports`), every command has its
//! own `--help`, and shells complete them (`vpcswitch completions SHELL`). Each
//! subcommand becomes the words of the control protocol (`{"cmd": [...]}`, see
//! [`super`]), which stays as it was: older clients keep working.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

/// `vpcswitch ctl`'s options (global: before or after the command).
#[derive(Debug, Args)]
#[command(
    about = "Query or command a running switch",
    long_about = "Query or command a running switch over its control socket. The socket \
                  is --socket, else the one the configuration given by --config names \
                  ([switch] control_socket), else /run/vpcswitch.sock. With --json every \
                  answer is JSON on stdout (errors too: {\"ok\": false, \"error\": ...}); \
                  exit 0 on success, 1 when the switch refused, 2 when it could not be asked.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct CtlArgs {
    /// control socket [default: the configuration's, else /run/vpcswitch.sock]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// the switch's configuration file: its `[switch] control_socket` is the socket
    #[arg(
        short = 'c',
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "socket"
    )]
    pub config: Option<PathBuf>,
    /// machine-readable output (JSON on stdout)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCmd,
}

/// Which frames of a port a capture takes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Direction {
    /// received from the port's device
    Rx,
    /// sent to the port's device
    Tx,
    /// both
    Both,
}

/// The file format of a capture.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// pcapng: the port's name and each frame's direction are in the file
    Pcapng,
    /// classic pcap (direction and port are lost), for old tools
    Pcap,
}

/// The control commands.
#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// Every port: backend, queues, counters, up or down
    Ports,
    /// Every VIP: bound ports, owner, moves, failover time
    Vips,
    /// Every EIP: target, next hop, who answers for it now
    Eips,
    /// The ARP/ND view: the addresses the switch answers for
    Neighbors,
    /// The routes of every VPC
    Routes,
    /// Counters: per port, per worker, drops by reason; the store's state
    Stats,
    /// The other hosts (SPEC 10): endpoint, ports, last heard, tunnel counters
    Hosts,
    /// Re-read the configuration (file or store) and reload it
    Reload,
    /// Trace a frame through the pipeline as if received on PORT (changes nothing)
    #[command(group = clap::ArgGroup::new("input").required(true).args(["hexframe", "flow", "pcap"]))]
    Trace {
        /// the ingress port
        port: String,
        /// the frame, in hex (spaces and colons ignored)
        hexframe: Option<String>,
        /// the frame by its fields, e.g. "arp arp.tpa=10.0.1.100", "tcp ip4.dst=10.0.2.12
        /// tcp.dst=80", "icmp6 ip6.dst=fd00:a:0:2::11" or "nd_ns nd.target=fd00:a:0:1::1"
        /// (OVN or OVS names; the rest from the port: see docs/operations.md)
        #[arg(long, value_name = "EXPR")]
        flow: Option<String>,
        /// every frame of a capture file (pcapng or pcap), or only --frame N
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// with --pcap: only the Nth frame (1 is the first)
        #[arg(long, value_name = "N", requires = "pcap", value_parser = clap::value_parser!(u64).range(1..))]
        frame: Option<u64>,
    },
    /// Capture a port's frames to a pcapng file (or stdout)
    Capture {
        /// the port
        port: String,
        /// which frames
        #[arg(short, long, value_enum, default_value = "both")]
        direction: Direction,
        /// stop after N frames (0: until Ctrl-C)
        #[arg(short = 'n', long, value_name = "N", default_value_t = 0)]
        count: u64,
        /// the file, `-` for stdout
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        write: String,
        /// file format
        #[arg(long, value_enum, default_value = "pcapng")]
        format: Format,
        /// keep only matching frames, e.g. "icmp and host 10.0.1.11", "tcp port 80",
        /// "icmp6 and host fd00::5", "arp", "not arp", "ether src 02:..": arp ip ip6
        /// icmp icmp6 tcp udp, host/src/dst A (IPv4 or IPv6), net A/N, [src|dst] port
        /// N, ether host|src|dst M, not, and
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Dropped frames, sampled: reason, port, a decode of each
    Drops {
        /// until Ctrl-C
        #[arg(short, long, conflicts_with = "secs")]
        follow: bool,
        /// for this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 1)]
        secs: u64,
        /// only this port's drops
        #[arg(short, long, value_name = "PORT")]
        port: Option<String>,
    },
    /// List every command with a one-line description
    ListCommands,
}

impl CtlCmd {
    /// The words of the control protocol, and where a capture is written (and how).
    fn words(&self) -> (Vec<String>, Option<(String, Format)>) {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            CtlCmd::Ports => (w(&["ports"]), None),
            CtlCmd::Vips => (w(&["vips"]), None),
            CtlCmd::Eips => (w(&["eips"]), None),
            CtlCmd::Neighbors => (w(&["neighbors"]), None),
            CtlCmd::Routes => (w(&["routes"]), None),
            CtlCmd::Stats => (w(&["stats"]), None),
            CtlCmd::Hosts => (w(&["hosts"]), None),
            CtlCmd::Reload => (w(&["reload"]), None),
            CtlCmd::Trace {
                port,
                hexframe,
                flow,
                ..
            } => match (hexframe, flow) {
                (Some(h), _) => (w(&["trace", port, h]), None),
                (_, Some(f)) => (w(&["trace-flow", port, f]), None),
                // --pcap: one request per frame, in run()
                _ => (Vec::new(), None),
            },
            CtlCmd::Capture {
                port,
                direction,
                count,
                write,
                format,
                filter,
            } => {
                let dir = match direction {
                    Direction::Rx => "rx",
                    Direction::Tx => "tx",
                    Direction::Both => "both",
                };
                let mut words = w(&["capture", port, dir, &count.to_string()]);
                // older switches take 4 words: a filter is sent only when given
                words.extend(filter.clone());
                (words, Some((write.clone(), *format)))
            }
            CtlCmd::Drops { follow, secs, port } => {
                let secs = if *follow { 0 } else { *secs };
                let mut words = w(&["drops", &secs.to_string()]);
                words.extend(port.clone());
                (words, None)
            }
            CtlCmd::ListCommands => (Vec::new(), None),
        }
    }
}

/// The commands and their one-line descriptions, from the definitions above.
pub fn command_list() -> Vec<(String, String)> {
    use clap::CommandFactory;
    crate::Cli::command()
        .find_subcommand("ctl")
        .map(|c| {
            c.get_subcommands()
                .filter(|s| s.get_name() != "help")
                .map(|s| {
                    (
                        s.get_name().to_string(),
                        s.get_about().map(|a| a.to_string()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `vpcswitch ctl`.
pub fn run(a: CtlArgs) -> ExitCode {
    if let CtlCmd::ListCommands = a.command {
        let list = command_list();
        if a.json {
            let v: Vec<super::schema::CommandRow> = list
                .iter()
                .map(|(n, d)| super::schema::CommandRow {
                    name: n.clone(),
                    about: d.clone(),
                })
                .collect();
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
        } else {
            let w = list.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (n, d) in list {
                println!("{n:<w$}  {d}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let socket = match (&a.socket, &a.config) {
        (Some(s), _) => s.clone(),
        (None, Some(cfg)) => match socket_of(cfg) {
            Ok(s) => s,
            Err(e) => return super::client::fail(a.json, &e, 2),
        },
        (None, None) => PathBuf::from(crate::DEFAULT_SOCKET),
    };
    if let CtlCmd::Trace {
        port,
        pcap: Some(file),
        frame,
        ..
    } = &a.command
    {
        return trace_file(&socket, a.json, port, file, *frame);
    }
    let (words, out) = a.command.words();
    super::client(&socket, a.json, &words, out)
}

/// `ctl trace PORT --pcap FILE [--frame N]`: traces each frame of the file (or the Nth)
/// as received on PORT, one request each; the first failure ends it.
fn trace_file(
    socket: &std::path::Path,
    json: bool,
    port: &str,
    file: &std::path::Path,
    only: Option<u64>,
) -> ExitCode {
    let frames = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| super::pcapng::read_any(&b))
    {
        Ok(f) => f,
        Err(e) => return super::client::fail(json, &format!("{}: {e}", file.display()), 2),
    };
    if let Some(n) = only {
        if n as usize > frames.len() {
            let msg = format!(
                "{} has {} frames, no frame {n}",
                file.display(),
                frames.len()
            );
            return super::client::fail(json, &msg, 2);
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let n = i as u64 + 1;
        if only.is_some_and(|o| o != n) {
            continue;
        }
        if !json {
            println!("== frame {n} ({} bytes)", f.data.len());
        }
        let hex: String = f.data.iter().map(|b| format!("{b:02x}")).collect();
        let code = super::client(socket, json, &["trace".into(), port.into(), hex], None);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// The control socket a configuration file names (`[switch] control_socket`, else the
/// default). Only that key is read: a file with other problems (the switch refused
/// its last edit) still finds its switch; a file that is not TOML does not.
fn socket_of(cfg: &std::path::Path) -> Result<PathBuf, String> {
    let text =
        std::fs::read_to_string(cfg).map_err(|e| format!("cannot read {}: {e}", cfg.display()))?;
    let v: toml::Table = toml::from_str(&text).map_err(|e| {
        format!(
            "cannot find the control socket in {}: not TOML: {}",
            cfg.display(),
            e.message().trim()
        )
    })?;
    match v.get("switch").and_then(|s| s.get("control_socket")) {
        None => Ok(PathBuf::from(crate::DEFAULT_SOCKET)),
        Some(toml::Value::String(p)) => Ok(PathBuf::from(p)),
        Some(other) => Err(format!(
            "{}: [switch] control_socket must be a path, not {}",
            cfg.display(),
            other.type_str()
        )),
    }
}
