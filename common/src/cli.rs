//! The shape every tool shares: global flags, built-in commands, the batch runner and `main`.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueHint};
use serde::Serialize;
use serde_json::Value;

use crate::complete;
use crate::error::{Context, Error, Result};
use crate::netns::{self, NetnsFd};
use crate::output;
use crate::privilege;
use crate::types::NsTarget;

/// Flags every tool accepts, before or after the verb.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Act inside network namespace NAME (/run/netns/NAME) or PATH such as /proc/PID/ns/net
    /// (like `ip -n NAME`)
    #[arg(long, global = true, value_name = "NAME|PATH", add = complete::namespaces())]
    pub ns: Option<NsTarget>,

    /// Indent the JSON output (like `ip -j -p`)
    #[arg(long, global = true)]
    pub pretty: bool,

    /// Dry run: validate and print what would change, change nothing
    #[arg(long, global = true)]
    pub check: bool,

    /// Log each step to stderr (repeat for more)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Run the commands in FILE (`-` for stdin), one per line, in one process; prints JSON Lines
    /// and stops at the first failing line (like `ip -batch`)
    #[arg(short = 'b', long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub batch: Option<PathBuf>,

    /// Print the version as JSON
    #[arg(long, global = true)]
    pub version: bool,
}

/// Commands every tool has.
#[derive(Subcommand, Debug, Clone)]
pub enum Builtin {
    /// Print the version as JSON
    Version,
    /// Print the script that registers the tool's completions with SHELL: namespace, link and
    /// table names are completed live, by the tool on PATH (`source <(TOOL completions bash)`)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum Top<C: Subcommand> {
    #[command(flatten)]
    Tool(C),
    #[command(flatten)]
    Builtin(Builtin),
}

#[derive(Parser, Debug)]
#[command(disable_version_flag = true, propagate_version = false)]
struct Cli<C: Subcommand> {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Top<C>>,
}

/// What a command produced: one JSON object that carries `changed`, or the plain text the
/// contract exempts. Built only through [`Changed`] (or [`Outcome::text`]), so no command can
/// print an object without `changed`.
#[derive(Debug)]
pub struct Outcome(Printed);

#[derive(Debug)]
enum Printed {
    /// The object, compact (serialised once: a listing of 16,000 rules made into a `Value`
    /// first cost a tenth of `natctl list`), and its `changed`.
    Json {
        text: String,
        changed: bool,
    },
    Text(String),
}

/// The envelope of every JSON result: `changed` first, then the members of `body`
/// (a struct or map, flattened beside it), as in `{"changed":true,"address":{..}}`.
#[derive(Debug, Serialize)]
pub struct Changed<T> {
    pub changed: bool,
    #[serde(flatten)]
    pub body: T,
}

/// A body with one named member, the common shape `{"changed":..,"<object>":{..}}`.
#[derive(Debug)]
pub struct Member<T> {
    key: &'static str,
    value: T,
}

impl<T: Serialize> Serialize for Member<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.key, &self.value)?;
        map.end()
    }
}

impl Outcome {
    /// `{"changed":changed, ..body}`: a result whose body has several members.
    pub fn report(changed: bool, body: impl Serialize) -> Result<Self> {
        serde_json::to_string(&Changed { changed, body })
            .map(|text| Outcome(Printed::Json { text, changed }))
            .context("serialising the result")
    }

    /// `{"changed":changed,"<key>":value}`: the result of a command on one object.
    pub fn object(changed: bool, key: &'static str, value: impl Serialize) -> Result<Self> {
        Self::report(changed, Member { key, value })
    }

    /// `{"changed":changed}` alone: a result with nothing to show (a secret written to a file).
    pub fn bare(changed: bool) -> Result<Self> {
        Self::report(changed, serde_json::Map::new())
    }

    /// `{"changed":false,"<key>":items}`: a listing, which never changes anything.
    pub fn listing(key: &'static str, items: impl Serialize) -> Result<Self> {
        Self::object(false, key, items)
    }

    /// Whether the command changed something (plain text never does: it only prints).
    pub fn changed(&self) -> bool {
        match &self.0 {
            Printed::Json { changed, .. } => *changed,
            Printed::Text(_) => false,
        }
    }

    /// Plain text, for the commands the contract exempts from JSON (a bare key, a script).
    pub fn text(text: String) -> Self {
        Outcome(Printed::Text(text))
    }
}

/// What a command runs with: the namespace it is in, dry-run mode, and an async runtime.
pub struct Ctx {
    /// The `--ns` target (the thread is already inside it), or None for the caller's namespace.
    pub ns: Option<NsTarget>,
    /// `--check`: compute and report, but change nothing.
    pub check: bool,
    /// A batch line whose change may wait for the lines after it ([`Command::deferrable`]): it
    /// plans its change and leaves it pending, and [`Command::settle`] commits what is pending.
    pub defer: bool,
    rt: &'static tokio::runtime::Runtime,
}

impl Ctx {
    /// Runs a future to completion on this thread (inside the command's namespace).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// The netlink connection in the command's namespace (one per command, see [`crate::nl`]).
    pub fn netlink(&self) -> Result<rtnetlink::Handle> {
        crate::nl::connect()
    }

    /// How to name the current namespace in messages: `namespace c00` or `the current namespace`.
    pub fn ns_label(&self) -> String {
        crate::types::ns_label(self.ns.as_ref())
    }

    /// The namespace name for a view's `netns` member (None, printed null, for the caller's).
    pub fn netns_name(&self) -> Option<String> {
        self.ns.as_ref().map(|n| n.to_string())
    }
}

/// A tool's own commands.
pub trait Command: Subcommand + std::fmt::Debug {
    /// Runs one command. The thread is already inside `ctx.ns`.
    fn run(self, ctx: &Ctx) -> Result<Outcome>;

    /// Why this command cannot be a line of a batch, if it cannot: one that replaces the
    /// process (`nsctl exec`) would silently drop the lines after it. A batch holding such a
    /// line is refused (exit 2) before any line runs.
    fn batch_refusal(&self) -> Option<&'static str> {
        None
    }

    /// Whether this command, as a batch line, may leave its change pending (planned, its output
    /// known) for [`Command::settle`] to commit with those of the deferrable lines of the same
    /// kind (the name returned) after it, in the same namespace, as one transaction: natctl's
    /// rule adds, which nftables validates whole at each commit (its cost grows with the table),
    /// and its rule deletions, each commit of which waits for an RCU grace period. A line alone
    /// is never deferred. None: never deferred.
    fn deferrable(&self) -> Option<&'static str> {
        None
    }

    /// Commits what the deferred lines left pending, in the namespace the thread is in. On
    /// failure: how many of them, in order, took effect, and the error of the first that did not.
    fn settle(_ctx: &Ctx) -> std::result::Result<(), (usize, Error)> {
        Ok(())
    }

    /// False for the few commands that need no privilege (`wgctl genkey`, like `wg genkey`):
    /// their failures are never explained as "this needs root".
    fn needs_privilege(&self) -> bool {
        true
    }
}

/// The whole of a tool's `main`: parse, enter the namespace, run, print, map errors to exit codes.
pub fn main<C: Command>(tool: &'static str, about: &'static str) -> ExitCode {
    complete::answer_if_asked(|| command::<C>(tool, about));
    output::init();
    let argv: Vec<String> = std::env::args().collect();
    let cli = match parse::<C>(tool, about, &argv) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    crate::log::set_level(cli.global.verbose);
    match drive(tool, about, cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            e.report(tool);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The whole clap command of a tool: its own commands, the built-in ones and the global flags
/// (what `main` parses with; the man pages and completions are made from it too).
pub fn command<C: Subcommand>(tool: &'static str, about: &'static str) -> clap::Command {
    Cli::<C>::command()
        .name(tool)
        .bin_name(tool)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
}

/// Parses argv; on error prints help/usage or `TOOL: error: ...` and gives the exit code.
fn parse<C: Subcommand>(
    tool: &'static str,
    about: &'static str,
    argv: &[String],
) -> std::result::Result<Cli<C>, ExitCode> {
    let res = command::<C>(tool, about)
        .try_get_matches_from(argv)
        .and_then(|m| Cli::<C>::from_arg_matches(&m));
    res.map_err(|e| {
        use clap::error::ErrorKind::*;
        match e.kind() {
            DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand => {
                output::restore_stdout();
                let _ = e.print();
                ExitCode::SUCCESS
            }
            _ => {
                Error::invalid(clap_message(&e)).report(tool);
                ExitCode::from(2)
            }
        }
    })
}

/// clap's message on one line, without its `error: ` prefix or the usage that follows: the
/// first paragraph, so "required arguments were not provided:" keeps the flags it names.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let msg = paragraph.join(" ");
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
    if msg.is_empty() {
        "invalid arguments".into()
    } else {
        msg.to_string()
    }
}

fn is_broken_pipe(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn drive<C: Command>(tool: &'static str, about: &'static str, cli: Cli<C>) -> Result<()> {
    let pretty = cli.global.pretty;
    if cli.global.version {
        return print(&version(tool)?, pretty);
    }
    match &cli.global.batch {
        Some(file) => run_batch::<C>(tool, about, &cli.global, file),
        None => {
            let Some(cmd) = cli.command else {
                return Err(Error::invalid(format!(
                    "no command given (try '{tool} --help')"
                )));
            };
            let out = execute(tool, cmd, &cli.global, false)?;
            print(&out, pretty)
        }
    }
}

/// `{"changed":false,"name":..,"version":..}`.
#[derive(Serialize)]
struct Version {
    name: &'static str,
    version: &'static str,
}

fn version(tool: &'static str) -> Result<Outcome> {
    let version = env!("CARGO_PKG_VERSION");
    Outcome::report(
        false,
        Version {
            name: tool,
            version,
        },
    )
}

fn print(out: &Outcome, pretty: bool) -> Result<()> {
    match &out.0 {
        Printed::Json { text, .. } if pretty => serde_json::from_str::<Value>(text)
            .map_err(std::io::Error::other)
            .and_then(|v| output::emit_json(&v, true)),
        Printed::Json { text, .. } => output::emit_text(&format!("{text}\n")),
        Printed::Text(t) => output::emit_text(t),
    }
    .context("writing to stdout")
}

/// Enters the command's namespace, runs it (DEFER: as a deferred batch line), and comes back
/// (the same for every batch line).
fn execute<C: Command>(
    tool: &'static str,
    cmd: Top<C>,
    global: &GlobalArgs,
    defer: bool,
) -> Result<Outcome> {
    match cmd {
        Top::Builtin(Builtin::Version) => version(tool),
        Top::Builtin(Builtin::Completions { shell }) => {
            Ok(Outcome::text(complete::registration(tool, shell)))
        }
        Top::Tool(cmd) => {
            crate::vlog!(3, "{tool}: {cmd:?}");
            let privileged = cmd.needs_privilege();
            inside(global, defer, |ctx| cmd.run(ctx)).and_then(|res| match res {
                Err(e) if privileged => Err(privilege::explain(e, privilege::CAP_NET_ADMIN)),
                other => other,
            })
        }
    }
}

/// Runs F with the context of GLOBAL, inside its namespace, and comes back.
fn inside<T>(global: &GlobalArgs, defer: bool, f: impl FnOnce(&Ctx) -> T) -> Result<T> {
    // `enter` does nothing when the thread is already there: without --ns no setns happens,
    // which an unprivileged caller could not do.
    let target = global.ns.as_ref().map(NetnsFd::open).transpose();
    let entered = target.and_then(|fd| fd.as_ref().map(NetnsFd::enter).transpose());
    let _entered = entered.map_err(|e| privilege::explain(e, privilege::CAP_SYS_ADMIN))?;
    let ctx = Ctx {
        ns: global.ns.clone(),
        check: global.check,
        defer,
        rt: netns::runtime()?,
    };
    let out = f(&ctx);
    // Before the guard takes the thread back: the sockets belong to this command.
    crate::nl::close_all();
    Ok(out)
}

/// One parsed batch line.
struct Line<C: Subcommand> {
    number: usize,
    global: GlobalArgs,
    command: Top<C>,
}

/// Reads the whole batch. Text that is not UTF-8 is invalid input (exit 2), reported with the
/// line it is on, before any line runs.
fn read_batch(file: &PathBuf) -> Result<String> {
    let mut bytes = Vec::new();
    let source = if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the batch from stdin")?;
        "the batch on stdin".to_string()
    } else {
        bytes = std::fs::read(file)
            .with_context(|| format!("reading batch file {}", file.display()))?;
        format!("batch file {}", file.display())
    };
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        Error::invalid(format!("{source}, line {line}: not valid UTF-8 text"))
    })
}

/// Parses every line first, so a typo on line 200 is reported before line 1 changes anything.
fn parse_batch<C: Command>(
    tool: &'static str,
    about: &'static str,
    outer: &GlobalArgs,
    text: &str,
) -> Result<Vec<Line<C>>> {
    let mut lines = Vec::new();
    // Built once: constructing the clap command costs more than parsing a line with it.
    let mut parser = command::<C>(tool, about);
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = shlex::split(trimmed)
            .ok_or_else(|| Error::invalid(format!("batch line {number}: unbalanced quotes")))?;
        let argv: Vec<String> = std::iter::once(tool.to_string()).chain(words).collect();
        let cli = parser
            .try_get_matches_from_mut(&argv)
            .and_then(|m| Cli::<C>::from_arg_matches(&m))
            .map_err(|e| Error::invalid(format!("batch line {number}: {}", clap_message(&e))))?;
        if cli.global.batch.is_some() {
            return Err(Error::invalid(format!(
                "batch line {number}: --batch cannot be nested"
            )));
        }
        let Some(command) = cli.command else {
            return Err(Error::invalid(format!("batch line {number}: no command")));
        };
        if let Top::Tool(cmd) = &command {
            if let Some(why) = cmd.batch_refusal() {
                return Err(Error::invalid(format!(
                    "batch line {number}: '{trimmed}' cannot run in a batch: {why}"
                )));
            }
        }
        let global = GlobalArgs {
            ns: cli.global.ns.or_else(|| outer.ns.clone()),
            check: cli.global.check || outer.check,
            ..GlobalArgs::default()
        };
        lines.push(Line {
            number,
            global,
            command,
        });
    }
    Ok(lines)
}

fn run_batch<C: Command>(
    tool: &'static str,
    about: &'static str,
    outer: &GlobalArgs,
    file: &PathBuf,
) -> Result<()> {
    let text = read_batch(file)?;
    // Every line is parsed before the first one runs: bad input there changes nothing (exit 2).
    let lines = parse_batch::<C>(tool, about, outer, &text)?;
    // The first line that changed something: after it, a failure is never exit 2, which says
    // that nothing changed.
    let mut changed_at: Option<usize> = None;
    let mut lines = lines.into_iter().peekable();
    while let Some(line) = lines.next() {
        // (the deferrable lines of its kind after a deferrable one, in its namespace, join it)
        let kind = deferrable(&line);
        let mut group = vec![line];
        while kind.is_some()
            && group.len() < GROUP_MAX
            && lines.peek().is_some_and(|next| {
                deferrable(next) == kind && next.global.ns == group[0].global.ns
            })
        {
            group.extend(lines.next());
        }
        let (outs, failure) = if group.len() == 1 {
            let line = group.remove(0);
            match execute(tool, line.command, &line.global, false) {
                Ok(out) => (vec![(line.number, line.global.check, out)], None),
                Err(e) => (Vec::new(), Some((line.number, e))),
            }
        } else {
            run_group(tool, group)
        };
        for (number, check, out) in outs {
            if out.changed() && !check {
                changed_at.get_or_insert(number);
            }
            print(&out, outer.pretty)?;
        }
        if let Some((number, e)) = failure {
            return Err(after_changes(prefix_line(e, number), changed_at));
        }
    }
    Ok(())
}

/// At most this many deferred lines are committed together: a transaction's messages are each
/// acknowledged, and the acknowledgements of one must fit the socket's receive buffer.
const GROUP_MAX: usize = 32;

/// The kind of LINE's deferral, if it may be deferred: a command that says so, not a dry run.
fn deferrable<C: Command>(line: &Line<C>) -> Option<&'static str> {
    match &line.command {
        Top::Tool(cmd) if !line.global.check => cmd.deferrable(),
        _ => None,
    }
}

/// The outputs of a batch's lines (number, dry run, output) and its failure (line number,
/// error), if any.
type Ran = (Vec<(usize, bool, Outcome)>, Option<(usize, Error)>);

/// Runs GROUP, deferrable lines of one namespace, deferred, then commits them
/// ([`Command::settle`]): the outputs of the lines that took effect, and the first failure.
fn run_group<C: Command>(tool: &'static str, group: Vec<Line<C>>) -> Ran {
    let global = group[0].global.clone();
    let mut outs = Vec::new();
    let mut failure = None;
    for line in group {
        match execute(tool, line.command, &line.global, true) {
            Ok(out) => outs.push((line.number, false, out)),
            Err(e) => {
                failure = Some((line.number, e));
                break;
            }
        }
    }
    // (what is pending is committed also when a later line failed: the lines before it took
    // effect, as without deferral)
    let settled = inside(&global, false, |ctx| C::settle(ctx))
        .unwrap_or_else(|e| Err((0, e)))
        .map_err(|(done, e)| (done, privilege::explain(e, privilege::CAP_NET_ADMIN)));
    if let Err((done, e)) = settled {
        let number = outs.get(done).map_or(0, |(n, _, _)| *n);
        outs.truncate(done);
        failure = Some((number, e));
    }
    (outs, failure)
}

/// A batch line's invalid input after an earlier line changed something: a failure (exit 1)
/// that says so, since exit 2 promises that nothing changed.
fn after_changes(e: Error, changed_at: Option<usize>) -> Error {
    match (e, changed_at) {
        (Error::Invalid(m), Some(n)) => Error::failed(format!(
            "{m} (after line {n} had changed something: a failure, not invalid input)"
        )),
        (e, _) => e,
    }
}

fn prefix_line(e: Error, number: usize) -> Error {
    match e {
        Error::Invalid(m) => Error::Invalid(format!("batch line {number}: {m}")),
        Error::Failed { what, source } => Error::Failed {
            what: format!("batch line {number}: {what}"),
            source,
        },
    }
}
