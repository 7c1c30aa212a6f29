//! The signing key: read from an environment variable or a file, never from the config, and
//! never written to a log or an error message.

use crate::config::KeySource;
use alloy_signer_local::PrivateKeySigner;

/// Load the key. Errors say where it was looked for, never what it is.
pub fn load(source: &KeySource) -> Result<PrivateKeySigner, String> {
    let (text, origin) = match source {
        KeySource::Env(var) => (
            std::env::var(var).map_err(|_| format!("signer: the environment variable {var} is not set"))?,
            format!("the environment variable {var}"),
        ),
        KeySource::File(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("signer: cannot read key file {path}: {e}"))?,
            format!("key file {path}"),
        ),
    };
    let hex = text.trim().trim_start_matches("0x");
    hex.parse::<PrivateKeySigner>().map_err(|_| format!("signer: {origin} does not hold a 32-byte hex private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_env_and_file_and_errors_that_do_not_leak() {
        // hardhat's well-known account #1
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let path = std::env::temp_dir().join(format!("keel-key-{}", std::process::id()));
        std::fs::write(&path, format!("{key}\n")).unwrap();
        let s = load(&KeySource::File(path.display().to_string())).unwrap();
        assert_eq!(format!("{:?}", s.address()).to_lowercase(), "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
        std::fs::write(&path, "not a key").unwrap();
        let e = load(&KeySource::File(path.display().to_string())).unwrap_err();
        assert!(e.contains("does not hold") && !e.contains("not a key"), "{e}");
        let e = load(&KeySource::Env("KEEL_TEST_SURELY_UNSET_VAR".into())).unwrap_err();
        assert!(e.contains("KEEL_TEST_SURELY_UNSET_VAR is not set"));
        let _ = std::fs::remove_file(path);
    }
}
