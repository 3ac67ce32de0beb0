//! The committed completion scripts in completions/ match what the binary generates, so they can
//! never go stale silently. Regenerate with `scripts/update-completions.sh`.

mod common;

#[test]
fn committed_completions_are_current() {
    for (shell, file) in [
        ("bash", "faultline.bash"),
        ("zsh", "_faultline"),
        ("fish", "faultline.fish"),
    ] {
        let generated = common::faultline()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(generated.status.success());
        let committed = std::fs::read(common::repo_root().join("completions").join(file))
            .unwrap_or_else(|_| panic!("completions/{file} is missing"));
        assert!(
            generated.stdout == committed,
            "completions/{file} is stale: run scripts/update-completions.sh"
        );
    }
}
