use concurrent_futures::task;

struct Connection {
    fd: i32,
}

#[task]
fn query(sql: String, connection: Connection) -> usize {
    sql.len() + connection.fd as usize
}

fn main() {}
