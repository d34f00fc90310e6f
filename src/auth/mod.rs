//! Who is calling: the authenticated principal of a request.

mod principal;

pub use principal::Principal;
