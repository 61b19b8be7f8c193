//! Forwarding impls: a backend behind an `Arc` or a `Box` is the backend.
//!
//! One macro writes both impls from one list of methods, and denies `clippy::missing_trait_methods` on
//! them: a wrapper that forgot a provided method would silently answer with the trait's default instead of
//! the inner backend's override (a test wrapper once dropped `Ledger::summary` that way).

/// `forward_to_inner!(Trait { methods… })`: `impl Trait for Arc<T>` and `for Box<T>`, each method
/// written as `(**self).method(…)`.
macro_rules! forward_to_inner {
    ($trait:path { $($body:tt)* }) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<T: $trait + ?Sized> $trait for std::sync::Arc<T> {
            $($body)*
        }

        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<T: $trait + ?Sized> $trait for Box<T> {
            $($body)*
        }
    };
}
