//! `/pods`, `/runningpods/` and `/configz` on `:10250`.
//!
//! STUB (issue 8): to be filled in.

use super::kubelet::{Conn, Context, Request};
use std::io;

pub fn pods(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "pods: not implemented yet\n")
}

pub fn running_pods(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "runningpods: not implemented yet\n")
}

pub fn configz(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "configz: not implemented yet\n")
}
