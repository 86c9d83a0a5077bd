//! `kvstore shell` on a terminal (a pty): the prompt, tab completion of
//! commands and keys, and history kept across sessions.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::BIN;

/// A pty pair: (master, slave).
#[allow(unsafe_code, reason = "audited: see the SAFETY comments")]
pub fn openpty() -> (File, OwnedFd) {
    let mut master = 0;
    let mut slave = 0;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds into the given ints; the name and termios
    // pointers may be null; `size` outlives the call.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both fds were just opened by openpty and are owned by nobody else.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The terminal side of a running shell.
struct Term {
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
    from: usize,
}

impl Term {
    /// Waits up to 10 s for `needle` after what was matched before.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let text = String::from_utf8_lossy(&seen[self.from..]);
                if let Some(at) = text.find(needle) {
                    self.from += at + needle.len();
                    return;
                }
                if Instant::now() > deadline {
                    panic!("{needle:?} not in {text:?}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }
}

fn shell(dir: &std::path::Path, home: &std::path::Path) -> (std::process::Child, Term) {
    let (master, slave) = openpty();
    let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let child = Command::new(BIN)
        .args(["shell", "--data-dir", dir.to_str().unwrap()])
        .env("HOME", home)
        .env("TERM", "xterm")
        .env_remove("KVSTORE_CONFIG")
        .stdin(io(&slave))
        .stdout(io(&slave))
        .stderr(io(&slave))
        .spawn()
        .unwrap();
    drop(slave);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().unwrap();
    let mut answer = master.try_clone().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once the shell has exited and closed the slave.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            // rustyline asks where the cursor is; a terminal would answer.
            if buf[..n].windows(4).any(|w| w == b"\x1b[6n") {
                let _ = answer.write_all(b"\x1b[1;1R");
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (
        child,
        Term {
            master,
            seen,
            from: 0,
        },
    )
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("shell did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn on_a_terminal_the_shell_prompts_completes_and_keeps_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let prompt = format!("{}> ", dir.display());
    let (mut child, mut term) = shell(&dir, tmp.path());
    term.expect("`help` lists the commands");
    term.expect(&prompt);
    term.send("put alpha '{\"a\": 1}'\r");
    term.expect("created");
    term.expect(&prompt);
    // Tab completes the command, then the key from the store.
    term.send("ge\t");
    term.expect("get ");
    term.send("al\t");
    term.expect("alpha ");
    term.send("\r");
    term.expect("{\"a\":1}");
    term.expect(&prompt);
    term.send("exit\r");
    assert!(wait_exit(&mut child).success());
    let history = std::fs::read_to_string(tmp.path().join(".kvstore_history")).unwrap();
    assert!(history.contains("put alpha '{\"a\": 1}'"), "{history}");
    assert!(history.contains("get alpha"), "{history}");
    // Ctrl-D at an empty prompt leaves too, with status 0.
    let (mut child, mut term) = shell(&dir, tmp.path());
    term.expect(&prompt);
    term.send("\x04");
    assert!(wait_exit(&mut child).success());
}
