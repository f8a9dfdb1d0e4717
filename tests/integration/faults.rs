//! Fault injection for tests that run real processes: one-way network partitions (iptables),
//! small disks (tmpfs), skewed clocks (libfaketime) and failing fsyncs (an LD_PRELOAD shim).
//! scripts/test.sh installs iptables and libfaketime; the tests run as root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// An iptables rule dropping every packet sent to a local TCP port, removed on drop.
pub struct DropInbound(String);

impl DropInbound {
    pub fn new(port: u16) -> DropInbound {
        let port = port.to_string();
        let ok = Command::new("iptables")
            .args(["-I", "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "iptables -I INPUT failed (scripts/test.sh installs iptables; the tests run as root)");
        DropInbound(port)
    }
}

impl Drop for DropInbound {
    fn drop(&mut self) {
        let _ = Command::new("iptables").args(["-D", "INPUT", "-p", "tcp", "--dport", &self.0, "-j", "DROP"]).status();
    }
}

/// A tmpfs mounted for the test, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (the tests run as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Free bytes of the file system holding `dir`, as df counts them.
pub fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output")
}

/// libfaketime's multi-threaded library, as scripts/test.sh installs it.
pub fn faketime() -> &'static str {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime is not installed (scripts/test.sh installs it: apt-get install libfaketime)");
    Box::leak(found.display().to_string().into_boxed_str())
}

/// Builds `shims/fsync_eio.c` with the C compiler every machine that runs the tests has (gcc):
/// with it preloaded, fsync and fdatasync fail with EIO while the file named by
/// `EIO_SHIM_TRIGGER` exists.
pub fn fsync_eio_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/shims/fsync_eio.c");
    let lib = dir.join("libfsync_eio.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("running cc: the fsync EIO shim is built with the system C compiler (install gcc)");
    assert!(out.status.success(), "cc failed to build the shim: {}", String::from_utf8_lossy(&out.stderr));
    lib
}
