//! `join_completed!`: parse the collection or the arms, then expand to completion-order code.

mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

/// Expands `join_completed_impl!($crate; input)`. On error, the expansion is the errors and
/// an expression of any type, so that the caller's code reports nothing more.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    match parse::input(input, &mut errors) {
        Some(input) if errors.is_empty() => expand::join(&input),
        _ => {
            let errors = errors.to_compile_errors();
            quote!({ #errors ::core::unreachable!() })
        }
    }
}
