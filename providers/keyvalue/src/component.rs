//! The store behind `wasi:keyvalue` (0.2.0-draft, the version
//! `wasmcloud-component` 0.2 imports): `store`, `atomics` and `batch` for
//! components running on `twig-component`.
//!
//! ```text
//!  guest: store.open("default") ──► KeyValueView::resolve_store ──► Arc<Store>
//!                                   (the host follows the component's
//!                                    current wasi:keyvalue link)
//!         ◄── own<bucket> (rep → (store, bucket name) in KeyValueCtx)
//!  guest: atomics.increment(bucket, "k", 1) ──► Store::increment(bucket name, …)
//! ```
//!
//! The store is chosen when a bucket is opened, so a `wasmcloud:bus`
//! `set-link-name` between two opens sends the second to another provider,
//! as on wasmCloud, while buckets already open stay where they are.
//!
//! Every failure reaches the guest as `error::other` with the store's own
//! message (oversize key, full store, full disk, read-only after an I/O
//! error); nothing traps the guest except a malformed call.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use twig_component::{Args, HostContext, HostError, Linker, Resource, Val};

use crate::Store;

/// The interfaces this module answers.
pub const STORE_INTERFACE: &str = "wasi:keyvalue/store@0.2.0-draft";
pub const ATOMICS_INTERFACE: &str = "wasi:keyvalue/atomics@0.2.0-draft";
pub const BATCH_INTERFACE: &str = "wasi:keyvalue/batch@0.2.0-draft";

/// Keys returned by one `list-keys` call; the guest pages on with the cursor.
const LIST_PAGE: usize = 1000;
/// Open buckets per instance; a guest that leaks handles gets an error.
const MAX_OPEN_BUCKETS: usize = 1024;
/// Cursors remembered per instance (oldest forgotten first).
const MAX_CURSORS: usize = 64;

/// Per-instance `wasi:keyvalue` state: the guest's open buckets and
/// list-keys cursors.
#[derive(Default)]
pub struct KeyValueCtx {
    buckets: HashMap<u32, OpenBucket>,
    next_rep: u32,
    /// `list-keys` cursors are `u64` in WIT; the store pages by last key.
    cursors: VecDeque<(u64, u32, String)>,
    next_cursor: u64,
}

struct OpenBucket {
    store: Arc<Store>,
    name: String,
}

impl KeyValueCtx {
    fn bucket(&self, rep: u32) -> Result<&OpenBucket, HostError> {
        self.buckets
            .get(&rep)
            .ok_or_else(|| HostError::new(format!("unknown wasi:keyvalue bucket handle {rep}")))
    }

    /// Open buckets, for tests and status.
    pub fn open_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Opens bucket `name` of `store` for a call the host makes (a
    /// watcher's `on-set`/`on-delete` gets it as `own<bucket>`); the rep
    /// to hand the guest with the type [`add_to_linker`] returned.
    pub fn hand_bucket(&mut self, store: Arc<Store>, name: &str) -> Result<u32, String> {
        if self.buckets.len() >= MAX_OPEN_BUCKETS {
            return Err(format!(
                "too many open buckets (limit {MAX_OPEN_BUCKETS}); drop some"
            ));
        }
        let rep = self.new_rep();
        self.buckets.insert(
            rep,
            OpenBucket {
                store,
                name: name.to_string(),
            },
        );
        Ok(rep)
    }

    /// Forgets a bucket handed in for a call once the call is over (a
    /// guest that dropped it already has).
    pub fn forget_bucket(&mut self, rep: u32) {
        self.buckets.remove(&rep);
        self.cursors.retain(|(_, b, _)| *b != rep);
    }

    fn new_rep(&mut self) -> u32 {
        self.next_rep = self.next_rep.wrapping_add(1).max(1);
        while self.buckets.contains_key(&self.next_rep) {
            self.next_rep = self.next_rep.wrapping_add(1).max(1);
        }
        self.next_rep
    }
}

/// How the keyvalue functions reach the embedder's per-instance state.
pub trait KeyValueView {
    fn keyvalue(&mut self) -> &mut KeyValueCtx;
    /// The store that the calling component's current `wasi:keyvalue` link
    /// names, or why there is none (e.g. no link, link target not running).
    fn resolve_store(&mut self) -> Result<Arc<Store>, String>;
}

/// Checks a bucket identifier: 1 to 255 bytes of letters, digits, `-`,
/// `_` and `.`, not starting with `.`. Bucket names are never used as paths
/// here, but other backends (and people reading a data directory) do, so a
/// name like `../x` is refused rather than quietly stored.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > crate::MAX_BUCKET_NAME_BYTES {
        return Err(format!(
            "invalid bucket name {name:?}: must be 1 to {} bytes",
            crate::MAX_BUCKET_NAME_BYTES
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "invalid bucket name {name:?}: {c:?} is not allowed (only letters, digits, '-', '_' and '.'; no path separators)"
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "invalid bucket name {name:?}: must not start with '.'"
        ));
    }
    Ok(())
}

/// Runs a write on `store`; under `fsync: always` it waits for the disk,
/// so it is a blocking section (see [`twig_component::blocking`]): whoever
/// runs the guest may move its other work away meanwhile. Under `batched`
/// a write only copies into the page cache and stays a plain call.
fn write<R>(store: &Store, f: impl FnOnce() -> R) -> R {
    if store.writes_wait_for_disk() {
        twig_component::blocking::section(f)
    } else {
        f()
    }
}

fn other(msg: impl Into<String>) -> Val {
    Val::Result(Err(Some(Box::new(Val::Variant(
        "other".into(),
        Some(Box::new(Val::String(msg.into()))),
    )))))
}

/// A binding's arguments: errors name the interface.
fn kv_args(args: &[Val]) -> Args<'_> {
    Args::new(args).context("wasi:keyvalue")
}

/// The bucket handle argument `i`: its rep.
fn arg_bucket(args: &[Val], i: usize) -> Result<u32, HostError> {
    Ok(kv_args(args).expect(i, "a bucket handle", |v| match v {
        Val::Resource(r) => Some(r.rep),
        _ => None,
    })?)
}

/// The store and bucket name behind bucket handle argument `i`.
fn bucket_arg<T: KeyValueView>(
    cx: &mut HostContext<'_, T>,
    args: &[Val],
    i: usize,
) -> Result<(Arc<Store>, String), HostError> {
    let rep = arg_bucket(args, i)?;
    let b = cx.data_mut().keyvalue().bucket(rep)?;
    Ok((b.store.clone(), b.name.clone()))
}

/// Pushes `ok(f())` or the error as `error::other`.
fn answer<R>(
    out: &mut Vec<Val>,
    r: crate::Result<R>,
    to_val: impl FnOnce(R) -> Option<Val>,
) -> Result<(), HostError> {
    out.push(match r {
        Ok(v) => Val::ok(to_val(v)),
        Err(e) => other(e.to_string()),
    });
    Ok(())
}

/// The export a watching component answers a set with, and a delete.
pub const ON_SET: &str = "wasi:keyvalue/watcher@0.2.0-draft#on-set";
pub const ON_DELETE: &str = "wasi:keyvalue/watcher@0.2.0-draft#on-delete";

/// Registers `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft`; returns the
/// `bucket` resource type (to hand a watcher its bucket).
pub fn add_to_linker<T: KeyValueView + 'static>(linker: &mut Linker<T>) -> u32 {
    let bucket_ty = linker.resource(STORE_INTERFACE, "bucket", |t: &mut T, rep| {
        let kv = t.keyvalue();
        kv.buckets.remove(&rep);
        kv.cursors.retain(|(_, b, _)| *b != rep);
    });

    let store = linker.interface(STORE_INTERFACE);
    store.func("open", move |cx, args, out| {
        let id = kv_args(args).string(0)?;
        // An empty identifier means the default bucket, as the Redis and
        // NATS providers treat it.
        let name = if id.is_empty() { "default" } else { id }.to_string();
        if let Err(e) = check_bucket_name(&name) {
            out.push(other(e));
            return Ok(());
        }
        let data = cx.data_mut();
        let store = match data.resolve_store() {
            Ok(s) => s,
            Err(e) => {
                out.push(other(e));
                return Ok(());
            }
        };
        let kv = data.keyvalue();
        if kv.buckets.len() >= MAX_OPEN_BUCKETS {
            out.push(other(format!(
                "too many open buckets (limit {MAX_OPEN_BUCKETS}); drop some"
            )));
            return Ok(());
        }
        let rep = kv.new_rep();
        kv.buckets.insert(rep, OpenBucket { store, name });
        out.push(Val::ok(Some(Val::Resource(Resource::host_own(
            bucket_ty, rep,
        )))));
        Ok(())
    });
    store.func("[method]bucket.get", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let r = s.get(&b, kv_args(args).string(1)?);
        answer(out, r, |v| {
            Some(Val::Option(v.map(|v| Box::new(Val::Bytes(v)))))
        })
    });
    store.func("[method]bucket.set", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let value = kv_args(args).bytes(2)?;
        let key = kv_args(args).string(1)?;
        let r = write(&s, || s.set(&b, key, &value));
        answer(out, r, |()| None)
    });
    store.func("[method]bucket.delete", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let key = kv_args(args).string(1)?;
        let r = write(&s, || s.delete(&b, key));
        answer(out, r, |()| None)
    });
    store.func("[method]bucket.exists", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let e = s.exists(&b, kv_args(args).string(1)?);
        out.push(Val::ok(Some(Val::Bool(e))));
        Ok(())
    });
    store.func("[method]bucket.list-keys", |cx, args, out| {
        let rep = arg_bucket(args, 0)?;
        let cursor = match args.get(1) {
            Some(Val::Option(Some(c))) => match **c {
                Val::U64(c) => Some(c),
                _ => return Err(HostError::new("wasi:keyvalue: expected option<u64>")),
            },
            _ => None,
        };
        let (s, b) = bucket_arg(cx, args, 0)?;
        let kv = cx.data_mut().keyvalue();
        let after = match cursor {
            // wasmCloud's keyvalue-nats and keyvalue-redis take `some(0)` as
            // the start too (Redis's SCAN begins at 0); twig's own cursors
            // start at 1.
            None | Some(0) => None,
            Some(c) => match kv.cursors.iter().find(|(id, r, _)| *id == c && *r == rep) {
                Some((_, _, key)) => Some(key.clone()),
                None => {
                    out.push(other(format!(
                        "unknown list-keys cursor {c} (cursors are kept for the last {MAX_CURSORS} pages of this instance)"
                    )));
                    return Ok(());
                }
            },
        };
        let page = s.list_keys(&b, after.as_deref(), LIST_PAGE);
        let next = page.cursor.map(|key| {
            kv.next_cursor += 1;
            if kv.cursors.len() >= MAX_CURSORS {
                kv.cursors.pop_front();
            }
            kv.cursors.push_back((kv.next_cursor, rep, key));
            kv.next_cursor
        });
        out.push(Val::ok(Some(Val::Record(vec![
            (
                "keys".into(),
                Val::List(page.keys.into_iter().map(Val::String).collect()),
            ),
            (
                "cursor".into(),
                Val::Option(next.map(|c| Box::new(Val::U64(c)))),
            ),
        ]))));
        Ok(())
    });

    linker
        .interface(ATOMICS_INTERFACE)
        .func("increment", |cx, args, out| {
            let (s, b) = bucket_arg(cx, args, 0)?;
            let delta = match args.get(2) {
                Some(Val::U64(d)) => *d,
                _ => return Err(HostError::new("wasi:keyvalue: expected a u64 delta")),
            };
            let key = kv_args(args).string(1)?;
            let r = write(&s, || s.increment(&b, key, delta));
            answer(out, r, |n| Some(Val::U64(n)))
        });

    let batch = linker.interface(BATCH_INTERFACE);
    batch.func("get-many", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let keys = kv_args(args).strings(1)?;
        // One key may be asked for many times: the values are what the host
        // allocates for the guest, so they are charged to the call's lift
        // budget before any is read.
        let r = match s.get_many_capped(&b, &keys, cx.lift_budget_left()) {
            Ok(Err(total)) => {
                // Over what is left: this ends the call, naming the budget.
                cx.reserve(total)?;
                s.get_many(&b, &keys)
            }
            Ok(Ok(values)) => {
                cx.reserve(values.iter().flatten().map(|v| v.len() as u64).sum())?;
                Ok(values)
            }
            Err(e) => Err(e),
        };
        answer(out, r, |values| {
            Some(Val::List(
                keys.into_iter()
                    .zip(values)
                    .map(|(k, v)| {
                        Val::Option(
                            v.map(|v| Box::new(Val::Tuple(vec![Val::String(k), Val::Bytes(v)]))),
                        )
                    })
                    .collect(),
            ))
        })
    });
    batch.func("set-many", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let pairs = match args.get(1) {
            Some(Val::List(items)) => items
                .iter()
                .map(|p| match p {
                    Val::Tuple(kv) => match kv.as_slice() {
                        [Val::String(k), v] => match v.bytes() {
                            Some(b) => Ok((k.clone(), b)),
                            None => Err(HostError::new("wasi:keyvalue: expected list<u8>")),
                        },
                        _ => Err(HostError::new("wasi:keyvalue: expected (string, list<u8>)")),
                    },
                    _ => Err(HostError::new("wasi:keyvalue: expected (string, list<u8>)")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(HostError::new("wasi:keyvalue: expected a list")),
        };
        let r = write(&s, || s.set_many(&b, &pairs));
        answer(out, r, |()| None)
    });
    batch.func("delete-many", |cx, args, out| {
        let (s, b) = bucket_arg(cx, args, 0)?;
        let keys = kv_args(args).strings(1)?;
        let r = write(&s, || s.delete_many(&b, &keys));
        answer(out, r, |()| None)
    });
    bucket_ty
}

#[cfg(test)]
mod tests {
    use super::check_bucket_name;

    #[test]
    fn bucket_names() {
        for good in ["default", "a", "cache.v2", "Sensor_Readings-1"] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../etc", "a/b", "a\\b", ".hidden", "a\0b", "sp ace"] {
            let e = check_bucket_name(bad).unwrap_err();
            assert!(e.starts_with("invalid bucket name"), "{bad}: {e}");
        }
        assert!(check_bucket_name(&"x".repeat(256)).is_err());
    }
}
