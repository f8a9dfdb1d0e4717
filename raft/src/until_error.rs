//! A stream of results cut at its first error, the error kept for after the last answer.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, future};

/// Where [`until_error`] leaves the error that ended its stream.
#[derive(Clone, Default)]
pub(crate) struct FirstError<E>(Arc<Mutex<Option<E>>>);

impl<E> FirstError<E> {
    pub fn take(&self) -> Option<E> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The `Ok` items of `input` up to its first `Err`, which is left in the returned slot.
pub(crate) fn until_error<T, E, S>(input: S) -> (impl Stream<Item = T>, FirstError<E>)
where
    S: Stream<Item = Result<T, E>>,
{
    let first = FirstError(Arc::new(Mutex::new(None)));
    let slot = first.0.clone();
    // scan ends the stream at the first None.
    let items = input.scan((), move |_, r| {
        future::ready(match r {
            Ok(v) => Some(v),
            Err(e) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        })
    });
    (items, first)
}
