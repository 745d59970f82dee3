//! The local cluster's nginx (deploy/local/nginx.conf.template) in front of two nodes:
//! WebSocket chat works through it, and stopping a node does not stop the service.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Cluster, User};

struct Nginx {
    dir: PathBuf,
    pub url: String,
}

impl Nginx {
    fn start(nodes: [u16; 2]) -> Self {
        assert!(
            std::path::Path::new("/usr/sbin/nginx").exists(),
            "nginx is missing: deploy/local/ensure-services.sh --nginx installs it"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let dir = std::env::temp_dir().join(format!("chat-lb-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chmod").arg("755").arg(&dir).status().unwrap();
        let template = include_str!("../../../deploy/local/nginx.conf.template");
        let conf = template
            .replace("__RUNDIR__", dir.to_str().unwrap())
            .replace("__LISTEN__", &format!("127.0.0.1:{port}"))
            .replace("__NODE_A__", &format!("127.0.0.1:{}", nodes[0]))
            .replace("__NODE_B__", &format!("127.0.0.1:{}", nodes[1]));
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let status = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .status()
            .unwrap();
        assert!(status.success(), "nginx started");
        Self {
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", self.dir.display()))
            .args(["-s", "stop"])
            .status();
    }
}

#[tokio::test]
async fn chat_works_through_nginx_and_survives_a_stopped_node() {
    let mut c = Cluster::start(2).await;
    let lb = Nginx::start([c.nodes[0].port, c.nodes[1].port]);
    for _ in 0..50 {
        if User::new(lb.url.clone()).get("/readyz").await.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let alice = lb_user(&lb, "alice").await;
    let bob = lb_user(&lb, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let m = a.send_acked(&bob.username, "through the balancer").await;
    assert_eq!(b.expect_type("chatMessage").await["message"], m);

    // One node goes away for good; nginx sends everything to the other.
    c.kill(0);
    for _ in 0..5 {
        assert_eq!(
            alice.get("/api/me").await.status(),
            200,
            "HTTP keeps working"
        );
    }
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let m = a.send_acked(&bob.username, "after the node died").await;
    assert_eq!(b.expect_type("chatMessage").await["message"], m);
    let late = lb_user(&lb, "late").await;
    assert_eq!(late.get("/api/me").await.status(), 200);
}

async fn lb_user(lb: &Nginx, name: &str) -> User {
    let mut u = User::new(lb.url.clone());
    let username = format!("{name}_{}", crate::harness::random(5));
    assert_eq!(
        u.register(&username, crate::harness::PASSWORD)
            .await
            .status(),
        201
    );
    assert_eq!(
        u.login(&username, crate::harness::PASSWORD).await.status(),
        200
    );
    u.username = username;
    u
}
