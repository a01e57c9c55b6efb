//! `#[task]`: parse the options and the function, model the task, check it, expand it.

mod check;
mod expand;
mod model;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

/// Expands `#[task(args)] item`. On error, the function is emitted unchanged next to the
/// errors, so that the rest of the crate and the IDE keep working.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let options = parse::options(args, &mut errors);
    let func = match parse::function(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            errors.push(error);
            let errors = errors.to_compile_errors();
            return quote!(#item #errors);
        }
    };
    let task = model::Task::new(&func, options);
    check::check(&task, &mut errors);
    if errors.is_empty() {
        expand::task(&task)
    } else {
        let errors = errors.to_compile_errors();
        quote!(#func #errors)
    }
}
