//! Helpers shared by the end-to-end test files.

pub mod daemon;
pub mod s3;

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free port on 127.0.0.1 for a server a test starts, never one handed to another test of
/// this binary: the system may give out again a port whose probe was just closed, and two
/// tests' servers would then start on one port. The one that fails to bind exits, and its
/// test talks to the other test's server — until that test ends and stops it (the likely
/// cause of one `Connection refused` in a full `tests/run-all.sh`).
#[allow(dead_code)] // not every test file starts servers
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A free port whose next port is free too (an executor listens on both), both given out as
/// [`free_port`] gives one.
#[allow(dead_code)]
pub fn free_port_pair() -> u16 {
    free_ports(2)
}

/// The first of `n` free ports in a row, none handed out before by this binary.
fn free_ports(n: u16) -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Some(ports) = (0..n)
            .map(|i| port.checked_add(i))
            .collect::<Option<Vec<u16>>>()
        else {
            continue;
        };
        let mut given = GIVEN.lock().unwrap();
        let free = ports.iter().all(|p| !given.contains(p))
            && ports[1..]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if free {
            given.extend(ports);
            return port;
        }
    }
}

/// Waits up to a minute until `child` listens on `port`; a child that exits first (it could
/// not bind the port, say) is reported as such, not as a refused connection later.
#[allow(dead_code)]
pub fn wait_for(port: u16, what: &str, child: &mut std::process::Child) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the {what} stopped: {status}");
        }
        assert!(
            std::time::Instant::now() < until,
            "the {what} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Asserts that no file below `store` that the engine wrote (everything but `inbox/` and the
/// line files a test put there) holds any of `codes`; returns how many files were checked.
#[allow(dead_code)] // not every test file writes a store
pub fn assert_no_code_written(store: &Path, codes: &[&str]) -> usize {
    let mut checked = 0;
    for f in files_below(store) {
        let rel = f.strip_prefix(store).unwrap();
        if rel.starts_with("inbox") || rel.extension().is_some_and(|e| e == "yaml") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for c in codes {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c} found in {}",
                rel.display()
            );
        }
        checked += 1;
    }
    checked
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_below(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// What a measured process did: its exit code, output, peak resident memory and time.
#[allow(dead_code)]
pub struct Measured {
    /// `None` when it was killed at the time limit (or by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Peak resident set size in bytes (the kernel's `ru_maxrss` of this process alone).
    pub peak_bytes: u64,
    pub elapsed: std::time::Duration,
}

/// Runs `command` to its end, killing it after `limit`, and measures its own peak memory
/// (`wait4` on its process, not the children of the whole test binary).
#[allow(dead_code)]
// The child is reaped by `wait4` (which std's `wait` cannot do with its usage).
#[allow(clippy::zombie_processes)]
#[cfg(target_os = "linux")]
pub fn measured(command: &mut std::process::Command, limit: std::time::Duration) -> Measured {
    use std::io::Read;
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut o = Vec::new();
        let _ = out.read_to_end(&mut o);
        o
    });
    let reading_err = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = err.read_to_end(&mut e);
        e
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: pid is our child's; status and usage are valid for writing.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid || done < 0 {
            break;
        }
        if !killed && started.elapsed() > limit {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    Measured {
        code: (!killed && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status)),
        stdout: reading.join().unwrap(),
        stderr: reading_err.join().unwrap(),
        peak_bytes: usage.ru_maxrss as u64 * 1024,
        elapsed,
    }
}
