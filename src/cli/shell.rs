//! `kvstore shell`: the client commands at a prompt, against one target
//! (a server, or a data directory opened once for the session).
//!
//! - On a terminal: line editing, history (kept in `~/.kvstore_history`) and
//!   tab completion of commands and keys (rustyline).
//! - Otherwise (a pipe, a file): one command per line, read plainly, no
//!   prompt; blank lines and lines starting with `#` are skipped. The shell
//!   exits with the status of the last command, as `sh` does.
//!
//! Invariant: a line runs exactly as the one-shot command would
//! ([`ops::execute`]): same output on stdout, same one-line messages on
//! stderr, same status (0 done, 1 not found, 2 usage, 3 failure). A failed
//! command never ends the session.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::CliError;
use super::client::ops::{self, Op, Outcome};
use super::client::{self, Target, TargetArgs};

/// One line of the shell.
#[derive(Debug, Parser)]
#[command(
    name = "kvstore shell",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true
)]
enum Line {
    #[command(flatten)]
    Op(Op),
    /// Show the commands, or one command's flags (`help put`).
    Help {
        /// A command.
        command: Option<String>,
    },
    /// Leave the shell (also `quit`, or Ctrl-D).
    #[command(alias = "quit")]
    Exit,
}

/// Commands the completer offers.
const COMMANDS: &[&str] = &[
    "batch", "delete", "exit", "get", "help", "list", "put", "quit", "stats",
];

/// What one line asked for.
enum Step {
    /// Go on; the line's status.
    Status(u8),
    /// Leave.
    Exit,
}

/// Runs the shell until `exit` or end of input.
pub fn run(args: &TargetArgs) -> Result<ExitCode, CliError> {
    let target = client::open(args)?;
    let status = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        interactive(target.as_ref(), &describe(args))
    } else {
        plain(target.as_ref(), std::io::stdin().lock())
    };
    target.close()?;
    Ok(ExitCode::from(status))
}

fn describe(args: &TargetArgs) -> String {
    match &args.data_dir {
        Some(dir) => dir.display().to_string(),
        None => args
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// Lines from a pipe or file; returns the last command's status.
fn plain(target: &dyn Target, input: impl BufRead) -> u8 {
    let mut last = 0;
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("kvstore: reading input: {e}");
                return 3;
            }
        };
        match step(target, &line) {
            Step::Status(s) => last = s,
            Step::Exit => break,
        }
    }
    last
}

/// The prompt on a terminal; returns 0 on `exit` or Ctrl-D.
fn interactive(target: &dyn Target, name: &str) -> u8 {
    let mut editor: Editor<ShellHelper<'_>, _> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kvstore: cannot set up the terminal ({e}); reading lines plainly");
            return plain(target, std::io::stdin().lock());
        }
    };
    editor.set_helper(Some(ShellHelper { target }));
    let history = history_path();
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    println!("connected to {name}; `help` lists the commands, Ctrl-D leaves");
    let prompt = format!("{name}> ");
    loop {
        match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if let Step::Exit = step(target, &line) {
                    break;
                }
            }
            // Ctrl-C abandons the line being typed, as in other shells.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("kvstore: reading the terminal: {e}");
                break;
            }
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!("kvstore: could not save history to {}: {e}", path.display());
    }
    0
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kvstore_history"))
}

/// Runs one line.
fn step(target: &dyn Target, text: &str) -> Step {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Step::Status(0);
    }
    let Some(words) = shlex::split(text) else {
        eprintln!("kvstore: unbalanced quotes in: {text}");
        return Step::Status(2);
    };
    let line = match Line::try_parse_from(&words) {
        Ok(line) => line,
        Err(e) if !e.use_stderr() => {
            // `put --help` and the like.
            print!("{e}");
            return Step::Status(0);
        }
        Err(e) => {
            eprintln!(
                "kvstore: {} (`help` lists the commands)",
                super::usage_line(&e)
            );
            return Step::Status(2);
        }
    };
    match line {
        Line::Exit => Step::Exit,
        Line::Help { command } => Step::Status(help(command.as_deref())),
        Line::Op(op) => {
            let mut out = std::io::stdout().lock();
            Step::Status(match ops::execute(target, &op, &mut out) {
                Ok(Outcome::Done) => 0,
                Ok(Outcome::NotFound(what)) => {
                    eprintln!("kvstore: {what}");
                    1
                }
                Err(e) => {
                    eprintln!("kvstore: {e}");
                    3
                }
            })
        }
    }
}

fn help(command: Option<&str>) -> u8 {
    let mut cmd = Line::command();
    match command {
        None => {
            println!("commands:");
            for sub in cmd.get_subcommands() {
                let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
                println!("  {:<8} {about}", sub.get_name());
            }
            println!(
                "`help COMMAND` shows its flags; quote values with spaces: put k '{{\"a\": 1}}'"
            );
            0
        }
        Some(name) => match cmd.find_subcommand_mut(name) {
            Some(sub) => {
                print!("{}", sub.render_help());
                0
            }
            None => {
                eprintln!("kvstore: no command {name:?} (`help` lists the commands)");
                2
            }
        },
    }
}

/// Tab completion: command names for the first word, stored keys for the
/// key of `get`, `put` and `delete`.
struct ShellHelper<'a> {
    target: &'a dyn Target,
}

/// Keys offered per completion.
const KEY_CANDIDATES: usize = 100;

impl Completer for ShellHelper<'_> {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let earlier: Vec<&str> = before[..start].split_whitespace().collect();
        let candidates = match earlier.as_slice() {
            [] => COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| format!("{c} "))
                .collect(),
            ["get" | "put" | "delete"] if !word.starts_with('-') => {
                // A failed listing (server gone) just offers nothing.
                self.target
                    .list(word, None, KEY_CANDIDATES)
                    .map(|page| page.keys)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|k| match shlex::try_quote(&k) {
                        Ok(q) => format!("{q} "),
                        Err(_) => format!("{k} "),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper<'_> {
    type Hint = String;
}

impl Highlighter for ShellHelper<'_> {}

impl Validator for ShellHelper<'_> {}

impl Helper for ShellHelper<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::client::{BatchOp, ClientError, Page, Write};

    struct Keys(Vec<&'static str>);

    impl Target for Keys {
        fn get(&self, _: &str) -> Result<Option<String>, ClientError> {
            Ok(None)
        }
        fn put(&self, _: &str, _: &Write) -> Result<bool, ClientError> {
            Ok(true)
        }
        fn delete(&self, _: &str) -> Result<bool, ClientError> {
            Ok(false)
        }
        fn list(&self, prefix: &str, _: Option<&str>, _: usize) -> Result<Page, ClientError> {
            let keys = self.0.iter().filter(|k| k.starts_with(prefix));
            Ok(Page {
                keys: keys.map(|k| k.to_string()).collect(),
                more: false,
            })
        }
        fn batch(&self, _: &[BatchOp]) -> Result<Vec<String>, ClientError> {
            Ok(Vec::new())
        }
        fn stats(&self) -> Result<String, ClientError> {
            Ok("{}".into())
        }
        fn close(self: Box<Self>) -> Result<(), ClientError> {
            Ok(())
        }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        let target = Keys(vec!["user:1", "user:2", "two words"]);
        let helper = ShellHelper { target: &target };
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        helper.complete(line, line.len(), &ctx).unwrap()
    }

    #[test]
    fn the_first_word_completes_to_commands() {
        assert_eq!(complete("de"), (0, vec!["delete ".to_string()]));
        assert_eq!(complete("s").1, vec!["stats ".to_string()]);
    }

    #[test]
    fn a_key_completes_to_stored_keys_quoted_when_needed() {
        assert_eq!(
            complete("get us"),
            (4, vec!["user:1 ".to_string(), "user:2 ".to_string()])
        );
        assert_eq!(complete("delete tw").1, vec!["'two words' ".to_string()]);
        assert!(complete("list --pre").1.is_empty());
    }

    #[test]
    fn every_command_the_completer_offers_parses() {
        for c in COMMANDS {
            let words: Vec<&str> = match *c {
                "get" | "delete" => vec![c, "k"],
                "put" => vec![c, "k", "1"],
                "batch" => vec![c, "file.json"],
                _ => vec![c],
            };
            assert!(Line::try_parse_from(words).is_ok(), "{c}");
        }
    }
}
