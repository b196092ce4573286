//! `genkey` and `pubkey`, like `wg genkey` / `wg pubkey`.

use std::path::PathBuf;

use clap::Args;
use common::{Ctx, Error, Outcome, Result};
use serde::Serialize;
use wireguard_control::Key;

use crate::keys;

#[derive(Args, Debug)]
pub struct Genkey {
    /// Write the key to FILE (created mode 0600, never overwritten; an existing valid key file
    /// is kept and reported with changed:false) and print its public key as JSON
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct KeyOut {
    changed: bool,
    public_key: Option<String>,
}

pub fn genkey(ctx: &Ctx, args: Genkey) -> Result<Outcome> {
    let Some(path) = args.out else {
        return Ok(Outcome::Text(format!(
            "{}\n",
            Key::generate_private().to_base64()
        )));
    };
    let existing = || -> Result<Outcome> {
        let key = keys::read_key_file(&path, "private key").map_err(|e| {
            Error::caused(
                format!(
                    "key file {} already exists and is not a usable private key; not overwriting it",
                    path.display()
                ),
                e,
            )
        })?;
        Outcome::json(KeyOut {
            changed: false,
            public_key: Some(key.get_public().to_base64()),
        })
    };
    if path.symlink_metadata().is_ok() {
        return existing();
    }
    if ctx.check {
        return Outcome::json(KeyOut {
            changed: true,
            public_key: None,
        });
    }
    let key = Key::generate_private();
    if !keys::write_new_key_file(&path, &key)? {
        return existing();
    }
    Outcome::json(KeyOut {
        changed: true,
        public_key: Some(key.get_public().to_base64()),
    })
}

pub fn pubkey() -> Result<Outcome> {
    let key = keys::read_stdin_key()?;
    Outcome::json(KeyOut {
        changed: false,
        public_key: Some(key.get_public().to_base64()),
    })
}
