//! `--config kvstore.toml` (or env `KVSTORE_CONFIG`): a TOML file with one
//! key per flag, so a deployment's settings live in one file.
//!
//! ```toml
//! port = 9000
//! segment_bytes = "64MiB"      # sizes and durations take units
//! sync = "periodic"
//! sync_interval_ms = "500ms"
//! body_idle_timeout = "10s"    # every serve flag is a key, limits included
//! max_connections = 4000
//!
//! [client]                     # get, put, delete, list, batch, stats, shell
//! url = "http://127.0.0.1:9000"
//! auth_token = "s3cret"
//! ```
//!
//! How: each key becomes the *default value* of the flag of that name (`_`
//! or `-`, either) in the commands it belongs to, before clap parses. So the
//! precedence is clap's own: flag > env > file > built-in default, and a
//! file value goes through the flag's own parser (units, enums, ranges).
//!
//! Invariants:
//! - Top-level keys belong to the server and the offline subcommands
//!   (`serve`, `inspect`, `verify`, `compact`, `backup`, `export`, `import`); the
//!   `[client]` table to the client commands. A server's `data_dir` thus never
//!   turns a client command into a direct one.
//! - A key that names no flag, or a value the flag refuses, is an error
//!   naming the file and the key; nothing is silently ignored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;

/// The subcommands whose keys live under `[client]`.
pub const CLIENT_COMMANDS: &[&str] = &["get", "put", "delete", "list", "batch", "stats", "shell"];

/// The table of the client commands' keys.
const CLIENT_TABLE: &str = "client";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("config {} line {line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A key that names no flag of the commands it applies to.
    #[error(
        "config {}: unknown key {key:?} (keys are flag names such as segment_bytes; \
         client flags go under [client])",
        path.display()
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with its table (`client.url`).
        key: String,
    },
    /// A value the flag refuses.
    #[error("config {}: {key}: {reason}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The config file named by `--config PATH` / `--config=PATH` in `args`, or
/// by env `KVSTORE_CONFIG`. Looked up before clap parses, since the file
/// changes what clap takes as defaults.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        let Some(w) = w.to_str() else { continue };
        if w == "--" {
            break;
        }
        if w == "--config" {
            return words.next().map(PathBuf::from);
        }
        if let Some(p) = w.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("KVSTORE_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Reads `path` and makes its values the defaults of `cmd`'s flags.
pub fn apply_file(cmd: Command, path: &Path) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    apply(cmd, path, &text)
}

/// Makes the values of the TOML `text` the defaults of `cmd`'s flags.
pub fn apply(mut cmd: Command, path: &Path, text: &str) -> Result<Command, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].lines().count().max(1)
        });
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            reason: e.message().trim().to_string(),
        }
    })?;
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let (client_subs, other_subs): (Vec<_>, Vec<_>) = subcommands
        .into_iter()
        .partition(|s| CLIENT_COMMANDS.contains(&s.as_str()));
    for (key, value) in &table {
        if key == CLIENT_TABLE {
            let toml::Value::Table(client) = value else {
                return Err(bad(path, key, "must be a table ([client])"));
            };
            for (ckey, cvalue) in client {
                let full = format!("{CLIENT_TABLE}.{ckey}");
                let text = scalar(cvalue).ok_or_else(|| bad(path, &full, NOT_SCALAR))?;
                cmd = set_default(cmd, false, &client_subs, ckey, &text)
                    .map_err(|e| e.into_error(path, &full))?;
            }
            continue;
        }
        let text = scalar(value).ok_or_else(|| bad(path, key, NOT_SCALAR))?;
        cmd =
            set_default(cmd, true, &other_subs, key, &text).map_err(|e| e.into_error(path, key))?;
    }
    Ok(cmd)
}

const NOT_SCALAR: &str = "must be a string, number or boolean";

fn bad(path: &Path, key: &str, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// A TOML value as the text a flag would be given.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

enum Miss {
    Unknown,
    Refused(String),
}

impl Miss {
    fn into_error(self, path: &Path, key: &str) -> ConfigError {
        match self {
            Miss::Unknown => ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.to_string(),
            },
            Miss::Refused(reason) => bad(path, key, &reason),
        }
    }
}

/// Sets `value` as the default of the flag named `key` on the root (when
/// `root`) and on each of `subs` that has it; unknown when none has.
fn set_default(
    mut cmd: Command,
    root: bool,
    subs: &[String],
    key: &str,
    value: &str,
) -> Result<Command, Miss> {
    let long = key.replace('_', "-");
    if matches!(long.as_str(), "config" | "help" | "version") {
        return Err(Miss::Unknown);
    }
    let mut found = false;
    if root {
        let (c, hit) = set_on(cmd, &long, value)?;
        cmd = c;
        found |= hit;
    }
    for name in subs {
        let Some(sub) = cmd.find_subcommand(name) else {
            continue;
        };
        let (sub, hit) = set_on(sub.clone(), &long, value)?;
        if hit {
            cmd = cmd.mut_subcommand(name, |_| sub);
            found = true;
        }
    }
    if found { Ok(cmd) } else { Err(Miss::Unknown) }
}

/// Sets the default of `cmd`'s own flag `--long` after checking `value`
/// with the flag's parser (clap asserts, and panics, when a default does not
/// parse).
fn set_on(cmd: Command, long: &str, value: &str) -> Result<(Command, bool), Miss> {
    let Some(arg) = cmd.get_arguments().find(|a| {
        a.get_long() == Some(long)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&long))
    }) else {
        return Ok((cmd, false));
    };
    if !arg.get_action().takes_values() {
        // A switch: `true` turns it on by default.
        return match value {
            "true" | "false" => {
                let id = arg.get_id().clone();
                let default = if value == "true" { "true" } else { "false" };
                Ok((cmd.mut_arg(id, |a| a.default_value(default)), true))
            }
            _ => Err(Miss::Refused("must be true or false".into())),
        };
    }
    // The flag alone in a scratch command: its parser (units, enums, ranges)
    // judges the value exactly as on the command line.
    let scratch = Command::new("config")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    if let Err(e) = scratch.try_get_matches_from([format!("--{long}={value}")]) {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("invalid value").to_string();
        return Err(Miss::Refused(
            first.trim_start_matches("error: ").to_string(),
        ));
    }
    let id = arg.get_id().clone();
    let value = value.to_string();
    Ok((cmd.mut_arg(id, |a| a.default_value(value)), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command::new("t")
            .arg(clap::Arg::new("port").long("port").default_value("1"))
            .arg(
                clap::Arg::new("segment-bytes")
                    .long("segment-bytes")
                    .value_parser(crate::cli::units::size),
            )
            .subcommand(
                Command::new("get").arg(clap::Arg::new("url").long("url").default_value("u")),
            )
            .subcommand(Command::new("verify").arg(clap::Arg::new("data-dir").long("data-dir")))
    }

    fn parse(text: &str, args: &[&str]) -> Result<clap::ArgMatches, ConfigError> {
        Ok(apply(cmd(), Path::new("k.toml"), text)?.get_matches_from(args))
    }

    #[test]
    fn a_file_value_becomes_the_default_and_a_flag_still_wins() {
        let m = parse("port = 9000\nsegment_bytes = \"4KiB\"", &["t"]).unwrap();
        assert_eq!(m.get_one::<String>("port").unwrap(), "9000");
        assert_eq!(*m.get_one::<u64>("segment-bytes").unwrap(), 4096);
        let m = parse("port = 9000", &["t", "--port", "7"]).unwrap();
        assert_eq!(m.get_one::<String>("port").unwrap(), "7");
    }

    #[test]
    fn client_keys_apply_to_client_commands_only() {
        let m = parse("[client]\nurl = \"http://x\"", &["t", "get"]).unwrap();
        let sub = m.subcommand_matches("get").unwrap();
        assert_eq!(sub.get_one::<String>("url").unwrap(), "http://x");
        // data_dir at the top level is the offline commands', not get's.
        let m = parse("data_dir = \"/d\"", &["t", "verify"]).unwrap();
        let sub = m.subcommand_matches("verify").unwrap();
        assert_eq!(sub.get_one::<String>("data-dir").unwrap(), "/d");
        assert!(matches!(
            parse("url = \"http://x\"", &["t"]),
            Err(ConfigError::UnknownKey { .. })
        ));
    }

    #[test]
    fn unknown_keys_bad_values_and_bad_toml_are_errors() {
        let e = parse("prot = 1", &["t"]).unwrap_err();
        assert!(e.to_string().contains("\"prot\""), "{e}");
        let e = parse("segment_bytes = \"64QB\"", &["t"]).unwrap_err();
        assert!(matches!(e, ConfigError::BadValue { .. }), "{e}");
        assert!(e.to_string().contains("segment_bytes"), "{e}");
        let e = parse("port = 1\nport = [", &["t"]).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        let e = parse("port = [1]", &["t"]).unwrap_err();
        assert!(matches!(e, ConfigError::BadValue { .. }), "{e}");
    }

    #[test]
    fn the_config_flag_is_found_before_parsing() {
        let args: Vec<OsString> = ["kvstore", "get", "--config", "a.toml", "k"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<OsString> = ["kvstore", "--config=b.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("b.toml")));
    }
}
