//! `genkey`, `genpsk` and `pubkey`, like `wg genkey` / `wg genpsk` / `wg pubkey`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueHint};
use common::{Ctx, Error, Outcome, Result};
use serde::Serialize;
use wireguard_control::Key;

use crate::keys;

#[derive(Args, Debug)]
pub struct Genkey {
    /// Write the key to FILE (created mode 0600, never overwritten; an existing valid key file
    /// is kept and reported with changed:false) and print its public key as JSON
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct Genpsk {
    /// Write the key to FILE (created mode 0600, never overwritten; an existing valid key file
    /// is kept and reported with changed:false) and print {"changed":..} as JSON, never the key
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub out: Option<PathBuf>,
}

/// The two kinds of secret a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// A Curve25519 private key: random, clamped (like `wg genkey`).
    Private,
    /// A preshared key: 32 random bytes as they come (like `wg genpsk`).
    Preshared,
}

impl Secret {
    /// A new key of this kind, from the OS's CSPRNG.
    pub fn generate(self) -> Key {
        match self {
            Secret::Private => Key::generate_private(),
            Secret::Preshared => Key::generate_preshared(),
        }
    }

    /// What the key is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Secret::Private => "private key",
            Secret::Preshared => "preshared key",
        }
    }
}

/// `{"changed":..,"public_key":..}`: a key file written or kept, or a key read from stdin.
#[derive(Serialize)]
struct PublicKey {
    public_key: Option<String>,
}

pub fn genkey(ctx: &Ctx, args: Genkey) -> Result<Outcome> {
    let Some(path) = args.out else {
        return Ok(bare(Secret::Private));
    };
    let (changed, key) = key_file(ctx.check, &path, Secret::Private)?;
    let public_key = key.map(|k| k.get_public().to_base64());
    Outcome::report(changed, PublicKey { public_key })
}

pub fn genpsk(ctx: &Ctx, args: Genpsk) -> Result<Outcome> {
    let Some(path) = args.out else {
        return Ok(bare(Secret::Preshared));
    };
    let (changed, _) = key_file(ctx.check, &path, Secret::Preshared)?;
    Outcome::bare(changed)
}

/// A new key as plain base64 on stdout (the contract's exception, like `wg genkey`).
fn bare(kind: Secret) -> Outcome {
    Outcome::text(format!("{}\n", kind.generate().to_base64()))
}

/// `--out FILE`: an existing FILE holding a valid key is kept (`changed:false`); otherwise a new
/// key of `kind` is written mode 0600, never replacing a file that appears meanwhile. Returns
/// whether FILE changed and the key it holds (none under `check` when there was no FILE yet).
pub fn key_file(check: bool, path: &Path, kind: Secret) -> Result<(bool, Option<Key>)> {
    let existing = || -> Result<(bool, Option<Key>)> {
        let key = keys::read_key_file(path, kind.name()).map_err(|e| {
            Error::caused(
                format!(
                    "key file {} already exists and is not a usable {}; not overwriting it",
                    path.display(),
                    kind.name()
                ),
                e,
            )
        })?;
        Ok((false, Some(key)))
    };
    if path.symlink_metadata().is_ok() {
        return existing();
    }
    if check {
        return Ok((true, None));
    }
    let key = kind.generate();
    if !keys::write_new_key_file(path, &key)? {
        return existing();
    }
    Ok((true, Some(key)))
}

pub fn pubkey() -> Result<Outcome> {
    let key = keys::read_stdin_key()?;
    let public_key = Some(key.get_public().to_base64());
    Outcome::report(false, PublicKey { public_key })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Preshared keys are 32 random bytes, not clamped like private keys: of 64, at least one
    /// has a bit set that clamping clears (the low 3 bits of byte 0, the top bit of byte 31;
    /// all 64 missing them has odds 2^-256).
    #[test]
    fn preshared_keys_are_not_clamped() {
        let clamped = |k: &Key| k.0[0] & 7 == 0 && k.0[31] & 0x80 == 0;
        let keys: Vec<Key> = (0..64).map(|_| Secret::Preshared.generate()).collect();
        assert!(
            keys.iter().any(|k| !clamped(k)),
            "every preshared key came clamped"
        );
        for k in &keys {
            let text = k.to_base64();
            assert_eq!(text.len(), 44);
            assert_eq!(Key::from_base64(&text).unwrap(), *k);
        }
        // Private keys stay clamped.
        assert!((0..64).all(|_| clamped(&Secret::Private.generate())));
    }

    /// `genpsk --out`: 32 bytes of base64 in a new file mode 0600; a second run keeps it; under
    /// --check nothing is written.
    #[test]
    fn preshared_key_files() {
        let dir = std::env::temp_dir().join(format!("wgctl-psk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("psk");
        assert_eq!(
            key_file(true, &path, Secret::Preshared).unwrap(),
            (true, None)
        );
        assert!(!path.exists(), "--check wrote a key");
        let (changed, key) = key_file(false, &path, Secret::Preshared).unwrap();
        assert!(changed);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", key.clone().unwrap().to_base64()));
        assert_eq!(Key::from_base64(text.trim()).unwrap().0.len(), 32);
        assert_eq!(
            key_file(false, &path, Secret::Preshared).unwrap(),
            (false, key)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Something that is not a key is never overwritten.
        std::fs::write(&path, "not a key\n").unwrap();
        let e = key_file(false, &path, Secret::Preshared).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("not overwriting"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
