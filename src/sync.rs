//! The one way this crate takes a `std::sync::Mutex`: a holder that
//! panicked leaves plain data behind (every value guarded here is replaced
//! whole or counted, never left half-updated in a way that matters), so
//! the lock is recovered rather than turned into a second panic. Owns
//! nothing else.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, recovering it if a holder panicked.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
