//! Runs PHP 8.2 for the form tests (`form_vectors.rs`, `form_props.rs`).

use std::process::Command;

/// Runs `php -n` with `args`, failing (never skipping) when PHP is missing.
pub fn run_php(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let mut command = Command::new("php");
    command
        .arg("-n")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|error| {
        panic!("cannot run `php` ({error}): install php8.2-cli (apt-get install php8.2-cli; scripts/test.sh does it)")
    });
    let mut pipe = child.stdin.take().expect("php stdin");
    let input = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().expect("php output");
    writer.join().expect("writer thread").expect("write to php");
    assert!(
        output.status.success(),
        "php failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
