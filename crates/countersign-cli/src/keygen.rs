//! `countersign keygen` and `countersign contentful secret`: dev keys and secrets.

use std::path::{Path, PathBuf};

use clap::Args;
use countersign_core::contentful::SigningSecret;
use countersign_core::contentstack::SigningKey;

use crate::common::{Failure, Outcome, print_line};

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The folder to write private.pem, public.pem and public-keys.json to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

/// Writes an RSA-2048 dev key pair in the forms Contentstack uses.
pub(crate) fn keygen(args: &KeygenArgs) -> Outcome {
    let files = ["private.pem", "public.pem", "public-keys.json"].map(|name| args.out.join(name));
    if !args.force
        && let Some(existing) = files.iter().find(|path| path.exists())
    {
        return Err(Failure::input(format!(
            "{} exists; pass --force to overwrite it",
            existing.display()
        )));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::input(format!("cannot create {}: {e}", args.out.display())))?;
    let key = SigningKey::generate().map_err(Failure::input)?;
    write_private(&files[0], &key.to_pkcs1_pem())?;
    write(&files[1], &key.public_key().to_pkcs1_pem())?;
    write(&files[2], &key.public_key().to_public_keys_json())?;
    print_line(&format!(
        "wrote {}, {} and {} (key {})",
        files[0].display(),
        files[1].display(),
        files[2].display(),
        key.public_key().fingerprint()
    ))
}

fn write(path: &Path, text: &str) -> Outcome {
    std::fs::write(path, text)
        .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))
}

/// The private key is readable by its owner only.
fn write_private(path: &Path, text: &str) -> Outcome {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))
}

/// Prints a new Contentful signing secret.
pub(crate) fn contentful_secret() -> Outcome {
    let secret = SigningSecret::generate().map_err(Failure::input)?;
    print_line(secret.expose())
}
