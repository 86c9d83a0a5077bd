//! Running the client commands (`kvstore get`, `shell`, …) of the real binary
//! with a clean environment, optional stdin, and their exit code.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::BIN;

/// What a client command did.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Done {
    /// Asserts exit code `code`, and (for failures) one line on stderr
    /// that starts with `kvstore: ` and contains `needle`.
    pub fn assert(&self, code: i32, needle: &str) -> &Done {
        assert_eq!(self.code, code, "{self:?}");
        if code != 0 {
            assert_eq!(self.err.lines().count(), 1, "{self:?}");
            assert!(self.err.starts_with("kvstore: "), "{self:?}");
            assert!(self.err.contains(needle), "{needle:?} not in {self:?}");
        }
        self
    }
}

/// `kvstore args...` with `env` and `stdin`, none of the store's variables
/// inherited.
pub fn kv(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Done {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATA_DIR")
        .env_remove("PORT")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .env_remove("KVSTORE_URL")
        .env_remove("KVSTORE_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Done {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--url http://127.0.0.1:port`.
pub fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
