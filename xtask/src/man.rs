//! One man page per tool, section 8, rendered by clap_mangen from the tool's clap command.
//!
//! clap_mangen's own `render` describes only the top level (and points at one page per
//! subcommand). A network engineer reads one page per tool, as `ip-link(8)` or `wg(8)`, so the
//! page here is assembled from clap_mangen's sections: the title, NAME and the global OPTIONS as
//! clap_mangen renders them; a SYNOPSIS with every `OBJECT VERB` form; a COMMANDS section with,
//! for each of them, its synopsis, its description and its options (clap_mangen's options
//! rendering, run on that subcommand); then the sections clap has no words for (EXIT STATUS,
//! JSON OUTPUT, ENVIRONMENT, FILES, EXAMPLES, SEE ALSO), written below per tool.

use std::io;
use std::path::{Path, PathBuf};

use clap::Arg;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

use crate::Tool;

/// What a tool's page says that its clap definition does not.
pub struct Page {
    /// DESCRIPTION, one paragraph an entry, before what every tool shares.
    pub description: &'static [&'static str],
    /// JSON OUTPUT, after what every tool shares: what prints what, and the shape.
    pub json: &'static [(&'static str, &'static [&'static str])],
    /// EXIT STATUS, after what every tool shares.
    pub exit_status: &'static [&'static str],
    /// ENVIRONMENT: variable, meaning (besides COMPLETE, which every tool has).
    pub environment: &'static [(&'static str, &'static str)],
    /// FILES: path, meaning.
    pub files: &'static [(&'static str, &'static str)],
    /// EXAMPLES: what it does, the command lines.
    pub examples: &'static [(&'static str, &'static [&'static str])],
    /// SEE ALSO: pages of other programs, `name(section)`; the other tools follow.
    pub see_also: &'static [&'static str],
}

/// Writes `DIR/TOOL.8` for every tool; returns the paths written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let date = build_date();
    let mut written = Vec::new();
    for tool in crate::tools() {
        let path = dir.join(format!("{}.8", tool.name));
        std::fs::write(&path, render(&tool, &date)?)?;
        written.push(path);
    }
    Ok(written)
}

/// The whole page of `tool`, as roff.
pub fn render(tool: &Tool, date: &str) -> io::Result<String> {
    let cmd = tool.command();
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let man = Man::new(cmd.clone())
        .title(tool.name.to_uppercase())
        .section("8")
        .date(date)
        .source(format!("niransix {version}"))
        .manual("niransix");
    let commands = crate::commands(&cmd);

    // The title keeps clap_mangen's preamble (the apostrophe string); the other parts drop it.
    let mut page =
        String::from_utf8(rendered(|w| man.render_title(w))?).map_err(io::Error::other)?;
    page += &section(|w| man.render_name_section(w))?;

    let mut doc = Doc::default();
    doc.heading("SH", "SYNOPSIS");
    for (path, sub) in &commands {
        doc.synopsis(tool.name, path, sub);
    }
    doc.heading("SH", "DESCRIPTION");
    for text in tool.page.description {
        doc.paragraph(text);
    }
    for text in shared_description(tool.name) {
        doc.paragraph(&text);
    }
    page += &doc.finish();

    page += &section(|w| man.render_options_section(w))?;

    let mut doc = Doc::default();
    doc.heading("SH", "COMMANDS");
    page += &doc.finish();
    for (path, sub) in &commands {
        page += &command(tool.name, path, sub)?;
    }

    let mut doc = Doc::default();
    doc.heading("SH", "EXIT STATUS");
    for (code, meaning) in EXIT_CODES {
        doc.definition(code, meaning);
    }
    doc.paragraph(&exit_report(tool.name));
    for text in tool.page.exit_status {
        doc.paragraph(text);
    }
    doc.heading("SH", "JSON OUTPUT");
    for text in SHARED_JSON {
        doc.paragraph(text);
    }
    for (what, lines) in tool.page.json {
        doc.display(what, lines);
    }
    doc.heading("SH", "ENVIRONMENT");
    doc.definition(
        "COMPLETE",
        &format!(
            "Set by the scripts that `{} completions SHELL` prints, when the shell asks for \
             completions: the tool then prints the candidates for the command line that \
             follows `--` and does nothing else.",
            tool.name
        ),
    );
    for (name, meaning) in tool.page.environment {
        doc.definition(name, meaning);
    }
    if !tool.page.files.is_empty() {
        doc.heading("SH", "FILES");
        for (path, meaning) in tool.page.files {
            doc.definition(path, meaning);
        }
    }
    doc.heading("SH", "EXAMPLES");
    for (what, lines) in tool.page.examples {
        doc.display(what, lines);
    }
    doc.heading("SH", "SEE ALSO");
    doc.see_also(tool);
    page += &doc.finish();
    Ok(page)
}

/// One command's subsection: its synopsis, what it does, its arguments and options.
fn command(tool: &str, path: &[String], sub: &clap::Command) -> io::Result<String> {
    let mut doc = Doc::default();
    doc.heading("SS", &format!("{tool} {}", path.join(" ")));
    doc.synopsis(tool, path, sub);
    let about = sub
        .get_long_about()
        .or_else(|| sub.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    for text in about.split("\n\n") {
        doc.paragraph(text);
    }
    let mut text = doc.finish();
    // The global options are on the page once, under OPTIONS; `-h` everywhere goes without saying.
    let own = sub
        .clone()
        .mut_args(|a| {
            let hide = a.is_global_set() || a.get_id() == "help" || a.is_hide_set();
            a.hide(hide)
        })
        .disable_help_flag(true);
    let options = section(|w| Man::new(own).render_options_section(w))?;
    // Under this command's own heading, not a section of their own.
    text.extend(
        options
            .lines()
            .filter(|l| !l.starts_with(".SH "))
            .map(|l| format!("{l}\n")),
    );
    Ok(text)
}

/// The roff of a page, with a paragraph break before every paragraph but the first under a
/// heading.
#[derive(Default)]
struct Doc {
    roff: Roff,
    after_heading: bool,
}

impl Doc {
    fn heading(&mut self, level: &str, title: &str) {
        self.roff.control(level, [title]);
        self.after_heading = true;
    }

    fn paragraph(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.paragraph_break();
        self.roff.text([roman(text)]);
    }

    fn paragraph_break(&mut self) {
        if !self.after_heading {
            self.roff.control("PP", []);
        }
        self.after_heading = false;
    }

    /// A paragraph, then its lines displayed as they are (commands, JSON).
    fn display(&mut self, what: &str, lines: &[&str]) {
        self.paragraph(what);
        self.roff.control("PP", []);
        self.roff.control("RS", ["4"]);
        self.roff.control("EX", []);
        for line in lines {
            self.roff.text([roman(*line)]);
        }
        self.roff.control("EE", []);
        self.roff.control("RE", []);
    }

    /// `.TP`: the term in bold, its meaning indented below.
    fn definition(&mut self, term: &str, meaning: &str) {
        self.roff.control("TP", []);
        self.roff.text([bold(term)]);
        self.roff.text([roman(meaning)]);
        self.after_heading = false;
    }

    /// `.SY TOOL` `[OPTIONS] OBJECT VERB ARGS...` `.YS`: positionals first, then the required
    /// options, then the optional ones, each as `--flag VALUE`, `[--flag VALUE]` or `[--flag]`.
    fn synopsis(&mut self, tool: &str, path: &[String], sub: &clap::Command) {
        let own: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
            .collect();
        let mut line = vec![
            roman("["),
            italic("OPTIONS"),
            roman("] "),
            bold(path.join(" ")),
        ];
        let positionals = own.iter().filter(|a| a.is_positional() && !a.is_last_set());
        let required = own
            .iter()
            .filter(|a| !a.is_positional() && a.is_required_set());
        let optional = own
            .iter()
            .filter(|a| !a.is_positional() && !a.is_required_set());
        for arg in positionals.chain(required).chain(optional) {
            line.push(roman(" "));
            line.extend(usage(arg));
        }
        for arg in own.iter().filter(|a| a.is_last_set()) {
            line.extend([roman(" "), bold("--"), roman(" ")]);
            line.extend(usage(arg));
        }
        self.roff.control("SY", [tool]);
        self.roff.text(line);
        self.roff.control("YS", []);
        self.after_heading = false;
    }

    /// The pages of other programs, then the other tools and the hub; names not hyphenated.
    fn see_also(&mut self, tool: &Tool) {
        let others = crate::tools()
            .into_iter()
            .filter(|t| t.name != tool.name)
            .map(|t| format!("{}(8)", t.name))
            .chain(["niransix-hub(8)".to_owned()]);
        let pages: Vec<String> = tool
            .page
            .see_also
            .iter()
            .map(|p| (*p).to_owned())
            .chain(others)
            .collect();
        let mut line = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let (name, section) = page.split_once('(').unwrap_or((page, ""));
            if i > 0 {
                line.push(roman(", "));
            }
            line.push(bold(name));
            line.push(roman(format!("({section}")));
        }
        self.roff.control("nh", []);
        self.roff.text(line);
        self.roff.control("hy", []);
        self.after_heading = false;
    }

    fn finish(self) -> String {
        self.roff.to_roff()
    }
}

/// How one argument is written in a synopsis.
fn usage(arg: &Arg) -> Vec<Inline> {
    let mut words = Vec::new();
    if !arg.is_positional() {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => String::new(),
        };
        words.push(bold(flag));
    }
    let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
    if takes_values {
        if !arg.is_positional() {
            words.push(roman(" "));
        }
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        let value = if choices.is_empty() {
            arg.get_value_names()
                .map(|names| names.join(" "))
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
        } else {
            choices.join("|")
        };
        words.push(italic(value));
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        if many || matches!(arg.get_action(), clap::ArgAction::Append) {
            words.push(roman("..."));
        }
    }
    if arg.is_required_set() {
        words
    } else {
        let mut optional = vec![roman("[")];
        optional.extend(words);
        optional.push(roman("]"));
        optional
    }
}

fn shared_description(tool: &str) -> [String; 4] {
    [
        format!(
            "Every command has the shape {tool} [OPTIONS] OBJECT VERB [ARGS], like ip(8); the \
             options may also follow the verb. With --ns the command acts inside that network \
             namespace, a name under /run/netns or a path such as /proc/PID/ns/net, like ip -n."
        ),
        "Each command prints exactly one JSON object (see JSON OUTPUT) with a boolean changed: \
         adding what already exists with the same settings, or deleting what is not there, \
         succeeds with changed false, so running a command again is safe. --check predicts: it \
         validates, prints what would change and changes nothing. A command either applies \
         fully or leaves no trace of itself: what a failing multi-step command created is \
         removed again."
            .into(),
        format!(
            "With -b FILE (- for standard input) {tool} runs many commands in one process: one \
             command a line, the same words as on the command line without the tool's name, # \
             for comments. Every line is parsed before the first one runs; the run stops at the \
             first line that fails."
        ),
        "Secrets (private and preshared keys) are read from files, never from the command line \
         or the environment, and never printed."
            .into(),
    ]
}

const EXIT_CODES: [(&str, &str); 3] = [
    ("0", "Success, also when nothing needed to change."),
    (
        "1",
        "The operation failed (a namespace or device that is not there, the kernel refused); \
         nothing the command made is left behind.",
    ),
    (
        "2",
        "Invalid arguments or input (a bad CIDR, port, name or key, a namespace path that is \
         not a namespace), found before anything was changed.",
    ),
];

fn exit_report(tool: &str) -> String {
    format!(
        "On failure standard output stays empty and standard error gets one line \
         \"{tool}: error: MESSAGE\" naming the offending value, then \"caused by:\" lines. \
         With -b the exit status is that of the first line that failed."
    )
}

const SHARED_JSON: [&str; 2] = [
    "Standard output carries exactly one JSON object, compact (--pretty indents it), with \
         snake_case keys and a boolean changed: true only if the kernel's state was modified \
         (with --check: would be). Listing commands print changed false and nest their objects \
         under a plural key. With -b, one object per line of input (JSON Lines). Logs, \
         warnings and errors go to standard error.",
    "version (and --version) prints {\"changed\":false,\"name\":TOOL,\"version\":VERSION}; \
         completions prints a shell script, not JSON.",
];

/// The page's date: `SOURCE_DATE_EPOCH` (reproducible builds), else today, as YYYY-MM-DD.
pub fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    civil_date(secs / 86_400)
}

/// Days since 1970-01-01 as YYYY-MM-DD (the proleptic Gregorian calendar; Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What a clap_mangen section renders.
fn rendered(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    Ok(buf)
}

/// A clap_mangen section without the preamble it repeats (`.ds Aq`, defined once by the title).
fn section(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<String> {
    let text = String::from_utf8(rendered(render)?).map_err(io::Error::other)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .map(|l| format!("{l}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_089), "2025-01-01");
    }
}
