//! `auth-server keys ...`, run as the real binary on a temp keys folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use auth_server::key_folder::{KeyFolder, KeyState, KeyStatus};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");

/// `auth-server keys <args>` on `dir`, with nothing from the caller's environment.
pub fn keys(dir: &Path, args: &[&str]) -> Output {
    keys_env(dir, args, &[])
}

pub fn keys_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_KEYS_DIR", dir)
        .env("RUST_LOG", "warn")
        .arg("keys")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = keys(dir, args);
    assert!(out.status.success(), "keys {args:?} failed: {}", stderr(&out));
    stdout(&out)
}

/// Runs a command that must be refused; returns its one-line stderr.
pub fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = keys_env(dir, args, env);
    assert!(!out.status.success(), "keys {args:?} should fail: {}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    err
}

fn state(dir: &Path) -> KeyState {
    KeyFolder::new(dir).read_state().unwrap()
}

/// `keys rotate` and return the new kid (the one active afterwards).
pub fn rotate(dir: &Path) -> String {
    ok(dir, &["rotate"]);
    state(dir).active.unwrap()
}

pub fn add(dir: &Path) -> String {
    let before = state(dir).keys;
    ok(dir, &["add"]);
    state(dir).keys.into_keys().find(|k| !before.contains_key(k)).unwrap()
}

fn list_json(dir: &Path) -> Value {
    serde_json::from_str(&ok(dir, &["list", "--json"])).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keys_help_lists_every_subcommand() {
    let out = Command::new(BIN).args(["keys", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    for sub in ["list", "add", "activate", "rotate", "retire", "prune", "--keys-dir"] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
    let out = Command::new(BIN).args(["keys", "prune", "--help"]).output().unwrap();
    assert!(stdout(&out).contains("--leeway"));
}

#[test]
fn list_on_an_empty_folder_says_there_are_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["list"]);
    assert!(out.contains("no keys"), "{out}");
}

#[test]
fn rotate_on_an_empty_folder_creates_the_first_active_key_with_private_files_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["rotate"]);
    let kid = state(dir.path()).active.unwrap();
    assert!(out.contains(&format!("{kid} is the active signing key")), "{out}");
    let store = KeyFolder::new(dir.path());
    assert!(store.public_path(&kid).is_file());
    assert!(store.private_path(&kid).is_file());
    #[cfg(unix)]
    {
        assert_eq!(mode(&store.private_path(&kid)), 0o600);
        assert_eq!(mode(&store.state_path()), 0o600);
        assert_eq!(mode(&store.private_dir()), 0o700);
        assert_eq!(mode(&store.public_path(&kid)), 0o644);
        assert_eq!(mode(&store.public_dir()), 0o755);
    }
}

#[test]
fn add_publishes_a_key_that_does_not_sign_and_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = rotate(dir.path());
    let out = ok(dir.path(), &["add", "--bits", "3072"]);
    let second = state(dir.path()).keys.into_keys().find(|k| *k != first).unwrap();
    assert!(out.contains(&format!("published {second} (RSA-3072)")), "{out}");
    assert!(out.contains(&format!("keys activate {second}")), "{out}");

    let st = state(dir.path());
    assert_eq!(st.active.as_deref(), Some(first.as_str()));
    assert_eq!(st.status(&second), Some(KeyStatus::Published));
    #[cfg(unix)]
    assert_eq!(mode(&KeyFolder::new(dir.path()).private_path(&second)), 0o600);

    let table = ok(dir.path(), &["list"]);
    let header = table.lines().next().unwrap();
    for col in ["KID", "BITS", "STATE", "CREATED", "ACTIVATED", "RETIRED"] {
        assert!(header.contains(col), "{header}");
    }
    let row = |kid: &str| table.lines().find(|l| l.starts_with(kid)).unwrap().to_owned();
    assert!(row(&first).contains("2048") && row(&first).contains("active"), "{table}");
    assert!(row(&second).contains("3072") && row(&second).contains("published"), "{table}");

    let json = list_json(dir.path());
    assert_eq!(json["active"], first.as_str());
    let entry = json["keys"].as_array().unwrap().iter().find(|k| k["kid"] == second.as_str());
    let entry = entry.unwrap();
    assert_eq!(entry["state"], "published");
    assert_eq!(entry["bits"], 3072);
    assert!(entry["created"].as_u64().unwrap() > 0);
    assert!(entry["activated"].is_null() && entry["retired"].is_null());
}

#[test]
fn activate_makes_a_published_key_the_signer_and_retires_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = rotate(dir.path());
    let second = add(dir.path());
    let out = ok(dir.path(), &["activate", &second]);
    assert!(out.contains(&format!("{second} is the active signing key")), "{out}");
    assert!(out.contains(&format!("{first} retired")), "{out}");
    let st = state(dir.path());
    assert_eq!(st.active.as_deref(), Some(second.as_str()));
    assert_eq!(st.status(&first), Some(KeyStatus::Retired));
    assert!(st.keys[&second].activated.is_some());
    assert!(st.keys[&first].retired.is_some());

    // Again: nothing changes, exit 0.
    let out = ok(dir.path(), &["activate", &second]);
    assert!(out.contains("already the active key"), "{out}");
}

#[test]
fn rotate_adds_and_activates_and_retires_the_previous_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = rotate(dir.path());
    let out = ok(dir.path(), &["rotate", "--bits", "2048"]);
    let st = state(dir.path());
    let second = st.active.clone().unwrap();
    assert_ne!(first, second);
    assert!(out.contains(&format!("{first} retired")), "{out}");
    assert_eq!(st.status(&first), Some(KeyStatus::Retired));
    assert_eq!(st.keys.len(), 2);
}

#[test]
fn retire_refuses_the_active_key_and_retires_a_published_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = rotate(dir.path());
    let err = refused(dir.path(), &["retire", &first], &[]);
    assert!(err.contains("active signing key") && err.contains(&first), "{err}");
    assert_eq!(state(dir.path()).status(&first), Some(KeyStatus::Active));

    let second = add(dir.path());
    let out = ok(dir.path(), &["retire", &second]);
    assert!(out.contains(&format!("{second} retired")), "{out}");
    assert_eq!(state(dir.path()).status(&second), Some(KeyStatus::Retired));
    // A retired key is never activated again.
    let err = refused(dir.path(), &["activate", &second], &[]);
    assert!(err.contains("retired"), "{err}");
}

#[test]
fn a_kid_starting_with_a_hyphen_works_as_printed_by_list() {
    let dir = tempfile::tempdir().unwrap();
    let real = rotate(dir.path());
    // About one kid in 64 starts with `-`: put one in the state as a published key (a crafted
    // entry; `retire` and the refusals need no key file).
    let hyphen = format!("-e{}", &real[2..]);
    let store = KeyFolder::new(dir.path());
    let mut st = store.read_state().unwrap();
    let mut meta = st.keys[&real].clone();
    (meta.activated, meta.retired) = (None, None);
    st.keys.insert(hyphen.clone(), meta);
    store.write_state(&st).unwrap();
    let listed = list_json(dir.path());
    let printed = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .find(|k| k.starts_with('-'))
        .unwrap();
    assert_eq!(printed, hyphen);

    // activate reaches the key store (which refuses: this crafted key has no files), not a
    // command-line error about `-e`.
    let err = refused(dir.path(), &["activate", &printed], &[]);
    assert!(err.contains(&format!("{printed}.pem")) && !err.contains("unexpected"), "{err}");
    let out = ok(dir.path(), &["retire", &printed]);
    assert!(out.contains(&format!("{printed} retired")), "{out}");
    assert_eq!(state(dir.path()).status(&printed), Some(KeyStatus::Retired));
    // And the active key, were it such a kid, is refused by the store, not by the parser.
    let err = refused(dir.path(), &["retire", "--", &real], &[]);
    assert!(err.contains("active signing key"), "{err}");
}

#[test]
fn unknown_kids_and_bad_sizes_are_refused_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    rotate(dir.path());
    let before = std::fs::read(KeyFolder::new(dir.path()).state_path()).unwrap();

    let unknown = "A".repeat(43);
    let err = refused(dir.path(), &["activate", &unknown], &[]);
    assert!(err.contains(&format!("no key {unknown}")), "{err}");
    let err = refused(dir.path(), &["retire", &unknown], &[]);
    assert!(err.contains("no key"), "{err}");
    let err = refused(dir.path(), &["activate", "../../../etc/passwd"], &[]);
    assert!(err.contains("is not a kid"), "{err}");

    for args in [["add", "--bits", "1024"], ["rotate", "--bits", "1000"]] {
        let err = refused(dir.path(), &args, &[]);
        assert!(
            err.contains("unsupported key size") && err.contains("2048, 3072 or 4096"),
            "{err}"
        );
    }
    let err = refused(dir.path(), &["prune", "--leeway", "soon"], &[]);
    assert!(err.contains("--leeway"), "{err}");

    // Nothing was written by any refusal.
    assert_eq!(std::fs::read(KeyFolder::new(dir.path()).state_path()).unwrap(), before);
    assert_eq!(state(dir.path()).keys.len(), 1);
}

/// Moves every `retired` time in the state back by `secs` (as if that much time had passed).
fn age_retired_keys(dir: &Path, secs: u64) {
    let store = KeyFolder::new(dir);
    let mut st = store.read_state().unwrap();
    for meta in st.keys.values_mut() {
        if let Some(r) = meta.retired.as_mut() {
            *r -= secs;
        }
    }
    store.write_state(&st).unwrap();
}

#[test]
fn prune_removes_nothing_until_the_access_token_lifetime_plus_leeway_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyFolder::new(dir.path());
    let first = rotate(dir.path());
    let second = rotate(dir.path());

    // Just retired: too early with the default 15 min lifetime and 30 s leeway. Nothing due
    // is success (cron runs it), with a line saying when the next key is due.
    let out = ok(dir.path(), &["prune"]);
    assert!(out.contains("nothing to prune yet") && out.contains(&first), "{out}");
    assert!(out.contains("can be pruned after ") && out.contains("TTL 900s + leeway 30s"), "{out}");
    assert!(!out.contains("removed"), "{out}");

    // 15 min later: still inside the leeway.
    age_retired_keys(dir.path(), 900);
    assert!(ok(dir.path(), &["prune"]).contains("nothing to prune yet"));
    // With a lifetime the server does not use either: the settings decide.
    let out = keys_env(dir.path(), &["prune"], &[("AUTH_ACCESS_TOKEN_TTL", "1h")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("TTL 3600s"), "{}", stdout(&out));
    assert!(store.public_path(&first).is_file());

    // A dry run says what would go and removes nothing.
    age_retired_keys(dir.path(), 31);
    let out = ok(dir.path(), &["prune", "--dry-run"]);
    assert!(out.contains(&format!("would remove {first}")), "{out}");
    assert!(store.private_path(&first).is_file());

    // --leeway is honoured.
    let out = ok(dir.path(), &["prune", "--leeway", "5m"]);
    assert!(out.contains("nothing to prune yet") && out.contains("leeway 300s"), "{out}");
    assert!(store.private_path(&first).is_file());

    let out = ok(dir.path(), &["prune"]);
    assert!(out.contains(&format!("removed {first}")), "{out}");
    assert!(!store.public_path(&first).exists());
    assert!(!store.private_path(&first).exists());
    let st = state(dir.path());
    assert!(!st.keys.contains_key(&first));
    assert_eq!(st.active.as_deref(), Some(second.as_str()));
    assert!(store.public_path(&second).is_file());

    // Nothing retired left: not a refusal either.
    let out = ok(dir.path(), &["prune"]);
    assert!(out.contains("nothing to prune"), "{out}");
}

#[test]
fn keys_dir_flag_overrides_the_environment() {
    let env_dir = tempfile::tempdir().unwrap();
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().to_str().unwrap();
    ok(env_dir.path(), &["rotate", "--keys-dir", flag]);
    assert!(state(flag_dir.path()).active.is_some());
    assert!(state(env_dir.path()).keys.is_empty());
    ok(env_dir.path(), &["--keys-dir", flag, "list"]);
}

#[test]
fn concurrent_commands_serialize_on_the_lock_and_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    rotate(dir.path());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                let args: &[&str] = if i % 2 == 0 { &["rotate"] } else { &["add"] };
                let out = keys(&dir, args);
                assert!(out.status.success(), "{}", stderr(&out));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let st = state(dir.path());
    assert_eq!(st.keys.len(), 5, "{st:?}");
    let active: Vec<_> =
        st.keys.keys().filter(|k| st.status(k) == Some(KeyStatus::Active)).collect();
    assert_eq!(active.len(), 1);
    let store = KeyFolder::new(dir.path());
    for kid in st.keys.keys() {
        assert!(store.public_path(kid).is_file() && store.private_path(kid).is_file());
    }
}

/// Reads every file a reader could read, checking each is whole: every `.pem` parses, the state
/// parses and names only keys whose two files exist. Returns the number of files checked.
fn check_consistent(store: &KeyFolder) -> Result<usize, String> {
    let mut checked = 0;
    let pems = |dir: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pem"))
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect()
    };
    for path in pems(store.public_dir()) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        access_token::public_key::PublicKey::from_pem(&bytes)
            .map_err(|e| format!("{}: partial public key: {e}", path.display()))?;
        checked += 1;
    }
    for path in pems(store.private_dir()) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let pem =
            pem::parse(&bytes).map_err(|e| format!("{}: partial pem: {e}", path.display()))?;
        if pem.tag() != "PRIVATE KEY" || pem.contents().len() < 1000 {
            return Err(format!("{}: partial private key", path.display()));
        }
        checked += 1;
    }
    let text = std::fs::read_to_string(store.state_path()).map_err(|e| e.to_string())?;
    let st: KeyState =
        serde_json::from_str(&text).map_err(|e| format!("partial state: {e}: {text}"))?;
    for kid in st.keys.keys() {
        if !store.public_path(kid).is_file() || !store.private_path(kid).is_file() {
            return Err(format!("state names {kid} whose files are missing"));
        }
    }
    Ok(checked + 1)
}

#[test]
fn a_concurrent_reader_never_sees_a_partial_file_or_a_state_naming_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyFolder::new(dir.path());
    rotate(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                check_consistent(&store)?;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        })
    };
    for _ in 0..10 {
        rotate(dir.path());
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 10, "the reader barely ran");
    assert_eq!(state(dir.path()).keys.len(), 11);
    assert_eq!(check_consistent(&store).unwrap(), 11 * 2 + 1);
}
