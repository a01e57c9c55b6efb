//! Writes `join_completed!` out: a call into the runtime, or a completion-order loop over arms.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};

use super::parse::{Form, Input};

pub(crate) fn join(input: &Input) -> TokenStream {
    let krate = &input.krate;
    match &input.form {
        Form::Collection { futures, timeout } => {
            let timeout = match timeout {
                Some(timeout) => quote!(::core::option::Option::Some(#timeout)),
                None => quote!(::core::option::Option::None),
            };
            quote!(#krate::__private::join_collection(#futures, #timeout))
        }
        Form::Arms(arms) => {
            // Mixed-site names: the arms' own code cannot see or shadow them.
            let name =
                |kind: &str, i: usize| format_ident!("__cf_{kind}_{i}", span = Span::mixed_site());
            let futures: Vec<_> = (0..arms.len()).map(|i| name("future", i)).collect();
            let values: Vec<_> = (0..arms.len()).map(|i| name("value", i)).collect();
            let indices = (0..arms.len()).map(Literal::usize_unsuffixed);
            let order = format_ident!("__cf_order", span = Span::mixed_site());
            let index = format_ident!("__cf_index", span = Span::mixed_site());
            let exprs = arms.iter().map(|arm| &arm.future);
            let bindings = arms.iter().map(|arm| &arm.binding);
            let bodies = arms.iter().map(|arm| &arm.body);
            let missing = arms.iter().map(|arm| {
                format!(
                    "join_completed!: the arm `{}` ended without a value; leave an arm with `?` \
                     or `return`, not `break` or `continue`",
                    arm.label
                )
            });
            quote! {{
                #(let #futures = #exprs;)*
                let #order = #krate::__private::completion_order(::std::vec![
                    #(#krate::__private::waitable(&#futures)),*
                ]);
                #(let mut #futures = ::core::option::Option::Some(#futures);)*
                #(let mut #values = ::core::option::Option::None;)*
                for #index in #order {
                    match #index {
                        #(
                            // An arm that leaves with `return` or `?` makes the assignment
                            // unreachable, on purpose.
                            #[allow(unreachable_code)]
                            #indices => {
                                let #bindings = #krate::__private::Future::into_result(
                                    ::core::option::Option::unwrap(
                                        ::core::option::Option::take(&mut #futures),
                                    ),
                                );
                                #values = ::core::option::Option::Some(#bodies);
                            }
                        )*
                        _ => ::core::unreachable!(),
                    }
                }
                (#(::core::option::Option::expect(#values, #missing),)*)
            }}
        }
    }
}
