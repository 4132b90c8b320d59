//! Out-of-range arguments are usage errors (exit status 2) before anything is loaded
//! or allocated: a huge `--threads`, `--batch` or `--iters` once aborted the process.

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_levit-bench"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn huge_counts_are_usage_errors() {
    for (flag, value) in [
        ("--threads", "1000000000000"),
        ("--threads", "257"),
        ("--threads", "0"),
        ("--batch", "1000000"),
        ("--batch", "0"),
        ("--batch", "1025"),
        ("--batch", "eight"),
        ("--iters", "1000000000000"),
        ("--iters", "0"),
        ("--threads", "-1"),
    ] {
        let arg = format!("{flag}={value}");
        let (code, stderr) = bench(&["--variant", "128s", &arg]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains("out of range") || stderr.contains("not a number"),
            "{stderr}"
        );
    }
}
