//! Locks held by one instance at a time across every instance sharing the Redis (one key each,
//! so one slot): taken with `SET key token NX PX ttl`, renewed and released only by their holder
//! (`renew_lock.lua`, `unlock.lua`), gone by themselves when a crashed holder's TTL runs out.

use std::time::Duration;

use super::{Retry, Store, StoreError, lua_script};
use crate::clock::millis;

/// The lock of scheduled key rotation (`crate::rotation`).
pub const KEY_ROTATION_LOCK: &str = "lock:{key-rotation}";

impl Store {
    /// Takes `lock` for `token` for `ttl` when nobody holds it; whether it was taken.
    pub async fn try_lock(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(lock).arg(token).arg("NX").arg("PX").arg(millis(ttl).max(1));
        // Repeated only when the first attempt cannot have run: a `SET` that ran and whose
        // answer was lost would read as "held by another" and only delay the holder's work.
        let reply: Option<String> = self
            .call(Retry::Once, |mut conn| {
                let cmd = &cmd;
                async move { cmd.query_async(&mut conn).await }
            })
            .await?;
        Ok(reply.is_some())
    }

    /// Extends `lock` to `ttl` from now if `token` still holds it; whether it does.
    pub async fn renew_lock(
        &self,
        lock: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut renew = lua_script!("renew_lock.lua").key(lock);
        renew.arg(token).arg(millis(ttl).max(1));
        let renewed: i64 = self.run(&renew).await?;
        Ok(renewed == 1)
    }

    /// Releases `lock` if `token` holds it; whether it did.
    pub async fn unlock(&self, lock: &str, token: &str) -> Result<bool, StoreError> {
        let mut unlock = lua_script!("unlock.lua").key(lock);
        unlock.arg(token);
        let released: i64 = self.run(&unlock).await?;
        Ok(released == 1)
    }
}
