//! The web dashboard in a real browser: Debian's headless `chromium`, driven over
//! WebDriver (`chromium-driver`'s chromedriver, through fantoccini) against a vigild
//! running the seed tutorial's programs with `[inet_http_server]` and credentials.
//!
//! A test binary of its own: each test starts a browser, which is heavy, and the
//! browser's processes must not be mistaken for leftovers of the `it` tests' daemons.
//! Every test has its own sandbox, ports, chromedriver and browser profile; the
//! chromedriver and its browser are killed by process group when the test ends,
//! whether it passed or not.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde_json::json;
use vigil_integration::{Daemon, Sandbox, TIMEOUT, current_user, procfs, wait_for, wait_until};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const LIGHTTPD: &str = "/usr/sbin/lighttpd";
/// The credentials of the seed's `[inet_http_server]`.
const USER: &str = "operator";
const PASSWORD: &str = "watchit";
/// Where the seed's `[inet_http_server]` listens.
const SEED_DASHBOARD: &str = "127.0.0.1:19001";

/// A port nobody listens on now (the kernel's pick, released for the caller).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The seed tutorial (examples/seed) in `dir`, its programs in conf.d/ so they start
/// with the daemon, on ports of its own, with its dashboard (behind `USER`/`PASSWORD`)
/// on `http_port`.
fn seed_with_dashboard(dir: &Path, http_port: u16) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let ports = [(18080, free_port()), (18081, free_port()), (18082, free_port())];
    let moved = |text: String| {
        ports.iter().fold(text, |text, (from, to)| text.replace(&from.to_string(), &to.to_string()))
    };
    for sub in ["apps", "conf.d", "logs", "run"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for entry in std::fs::read_dir(example.join("apps")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join("apps").join(entry.file_name())).unwrap();
        }
    }
    for name in ["app1", "app2", "http"] {
        let text = std::fs::read_to_string(example.join(format!("programs/{name}.conf"))).unwrap();
        std::fs::write(dir.join(format!("conf.d/{name}.conf")), moved(text)).unwrap();
    }
    let mut lighttpd = moved(std::fs::read_to_string(example.join("lighttpd.conf")).unwrap());
    // The pages of "another site" a test puts in the document root (else the browser
    // would download them).
    lighttpd.push_str("mimetype.assign = (\".html\" => \"text/html\")\n");
    std::fs::write(dir.join("lighttpd.conf"), lighttpd).unwrap();
    let config = std::fs::read_to_string(example.join("supervisord.conf")).unwrap();
    for line in [
        format!("port={SEED_DASHBOARD}"),
        format!("username={USER}"),
        format!("password={PASSWORD}"),
    ] {
        assert!(config.lines().any(|l| l == line), "the seed's [inet_http_server] has {line}");
    }
    let config = config.replace(SEED_DASHBOARD, &format!("127.0.0.1:{http_port}"));
    let path = dir.join("supervisord.conf");
    std::fs::write(&path, config).unwrap();
    path
}

/// chromedriver on a port of its own, and the headless browser it drives; both are
/// killed (by process group) and reaped when this is dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).is_file(),
                "the dashboard tests need {path}: run them with `scripts/test`, which installs it, or `apt-get install {package}`"
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        // The browser's home, settings and caches (and its crash handler's database)
        // stay in the test's own directory.
        let home = profile.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser { driver, client: None, runtime, _profile: profile };
        wait_until(TIMEOUT, "chromedriver to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
        ];
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!("--user-data-dir={}", browser._profile.path().join("profile").display()));
        let capabilities = json!({
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let url = format!("http://127.0.0.1:{port}");
        let client = browser
            .runtime
            .block_on(
                ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&url),
            )
            .expect("a browser session");
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap();
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn execute(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client().execute(script, Vec::new())).unwrap()
    }

    /// Runs `script`, whose last argument is the callback to call with the result.
    fn execute_async(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client().execute_async(script, Vec::new())).unwrap()
    }

    /// The attribute `attribute` of the element `css` selects, if there is one.
    fn attr(&self, css: &str, attribute: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.attr(attribute).await.ok().flatten()
        })
    }

    /// The text of the element `css` selects, if there is one.
    fn text(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    fn click(&self, css: &str) {
        self.runtime.block_on(async {
            self.client().find(Locator::Css(css)).await.unwrap().click().await.unwrap();
        });
    }

    /// The state a process's row shows.
    fn state(&self, name: &str) -> Option<String> {
        self.attr(&format!("tr[data-name=\"{name}\"]"), "data-state")
    }

    /// The pid a process's row shows.
    fn pid(&self, name: &str) -> Option<i32> {
        self.text(&format!("tr[data-name=\"{name}\"] td.pid"))?.parse().ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // chromedriver leads its process group; the browser it started is in it.
        let group = Pid::from_raw(i32::try_from(self.driver.id()).unwrap());
        let _ = killpg(group, Signal::SIGKILL);
        let _ = vigil_integration::wait_timeout(&mut self.driver, TIMEOUT);
        // The browser's processes, orphaned to this process (vigil_integration makes
        // it a subreaper), are reaped as they die.
        wait_until(TIMEOUT, "the browser's processes to end", || {
            loop {
                match waitpid(Pid::from_raw(-group.as_raw()), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => return false,
                    Ok(_) => {}
                    Err(_) => return true,
                }
            }
        });
        // Its crash handler leaves the group (it makes its own); it names the browser's
        // home, which is this test's.
        let home = self._profile.path().display().to_string();
        for pid in procfs::children(i32::try_from(std::process::id()).unwrap()) {
            if procfs::cmdline(pid).contains(&home) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
            }
        }
    }
}

/// A daemon running the seed programs with the dashboard, and a browser logged in to it.
struct Setup {
    browser: Browser,
    daemon: Daemon,
    port: u16,
    sandbox: Sandbox,
}

impl Setup {
    fn start() -> Setup {
        assert!(
            Path::new(LIGHTTPD).is_file(),
            "the seed programs need lighttpd at {LIGHTTPD}: run the tests with `scripts/test`, which installs it"
        );
        let sandbox = Sandbox::new();
        let dir = sandbox.join("seed");
        let port = free_port();
        let config = seed_with_dashboard(&dir, port);
        let mut env = BTreeMap::new();
        env.insert("USER".to_owned(), std::env::var("USER").unwrap_or_else(|_| current_user()));
        let daemon = Daemon::start(&dir, &config, &[], &env);
        for name in ["app1", "app2", "http"] {
            wait_until(TIMEOUT, &format!("{name} RUNNING"), || daemon.state(name) == "RUNNING");
        }
        let browser = Browser::start();
        browser.goto(&format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}/"));
        Setup { browser, daemon, port, sandbox }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The pid `vigilctl status` shows for `name`.
    fn status_pid(&self, name: &str) -> Option<i32> {
        let (state, description) = self.daemon.status_of(name)?;
        if state != "RUNNING" {
            return None;
        }
        description.strip_prefix("pid ")?.split(',').next()?.parse().ok()
    }
}

/// A raw HTTP/1.1 request; the status code and the whole response.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

#[test]
fn the_table_lists_the_seed_programs_and_follows_them_live() {
    let setup = Setup::start();
    let browser = &setup.browser;
    for name in ["app1", "app2", "http"] {
        wait_until(TIMEOUT, &format!("{name}'s row RUNNING"), || {
            browser.state(name).as_deref() == Some("RUNNING")
        });
        let pid = wait_for(TIMEOUT, "the pid in the row", || browser.pid(name));
        assert_eq!(Some(pid), setup.status_pid(name), "{name}");
    }
    assert_eq!(
        browser.text("tr[data-name=\"app1\"] td.group").as_deref(),
        Some("app1"),
        "the group column"
    );
    // Marks this page: a reload would lose the mark.
    browser.execute("window.vigilTestMark = 'same page'; return null;");

    // Stop from the page: the row turns STOPPED, pushed by the daemon.
    browser.click("tr[data-name=\"app2\"] button[data-action=\"stop\"]");
    wait_until(TIMEOUT, "app2's row STOPPED", || {
        browser.state("app2").as_deref() == Some("STOPPED")
    });
    assert_eq!(setup.daemon.state("app2"), "STOPPED");
    assert_eq!(browser.execute("return window.vigilTestMark;"), json!("same page"), "no reload");

    // Killed from outside: the restart shows live, with its new pid.
    let old = browser.pid("app1").unwrap();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let new = wait_for(TIMEOUT, "app1's row with a new pid", || {
        let pid = browser.pid("app1")?;
        (pid != old && browser.state("app1").as_deref() == Some("RUNNING")).then_some(pid)
    });
    wait_until(TIMEOUT, "vigilctl to agree", || setup.status_pid("app1") == Some(new));
    let restarts = browser.text("tr[data-name=\"app1\"] td.restarts").unwrap();
    assert_eq!(restarts, "1", "the restart is counted");
    assert_eq!(browser.execute("return window.vigilTestMark;"), json!("same page"), "no reload");

    // Start it again from the page.
    browser.click("tr[data-name=\"app2\"] button[data-action=\"start\"]");
    wait_until(TIMEOUT, "app2's row RUNNING again", || {
        browser.state("app2").as_deref() == Some("RUNNING")
    });

    // A program dropped into conf.d/: "Update…" shows the plan, and applies it only
    // when asked.
    let extra = format!(
        "[program:extra]\ncommand={} --sleep 3600\nstartsecs=0\n",
        vigil_integration::child_bin().display()
    );
    std::fs::write(setup.sandbox.join("seed/conf.d/extra.conf"), extra).unwrap();
    browser.click("#update");
    let plan = wait_for(TIMEOUT, "the update plan", || {
        let open = browser.execute("return document.getElementById('plan').open;");
        let steps = browser.text("#plan-steps")?;
        (open == json!(true) && !steps.is_empty()).then_some(steps)
    });
    assert_eq!(plan, "add group extra: start extra");
    assert!(browser.state("extra").is_none(), "the plan applied nothing");
    assert!(setup.daemon.state("extra").is_empty(), "the plan applied nothing");
    browser.click("#plan-apply");
    wait_until(TIMEOUT, "extra's row RUNNING", || {
        browser.state("extra").as_deref() == Some("RUNNING")
    });
    assert_eq!(setup.daemon.state("extra"), "RUNNING");
    assert_eq!(browser.execute("return window.vigilTestMark;"), json!("same page"), "no reload");

    // The tail page follows app1's request log as requests arrive.
    browser.goto(&format!("{}/tail.html?processname=app1&channel=stderr", setup.origin()));
    wait_until(TIMEOUT, "the tail page to follow", || {
        browser.attr("#live", "data-live").as_deref() == Some("live")
    });
    let app1_port = setting(&setup.sandbox.join("seed/conf.d/app1.conf"), "APP1_PORT=\"", "\"");
    let (status, _) =
        http(app1_port, "GET /app1/seen-by-the-browser HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200);
    wait_until(TIMEOUT, "the new request in the tail view", || {
        browser.text("#log").is_some_and(|log| log.contains("GET /app1/seen-by-the-browser"))
    });
}

#[test]
fn requests_without_credentials_or_from_another_origin_are_refused() {
    let setup = Setup::start();
    let browser = &setup.browser;
    wait_until(TIMEOUT, "app1's row RUNNING", || {
        browser.state("app1").as_deref() == Some("RUNNING")
    });

    // Without credentials: 401 with supervisord's challenge, for the page and for an action.
    let (status, response) =
        http(setup.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 401, "{response}");
    assert!(
        response.contains("WWW-Authenticate: Basic realm=\"default\"")
            || response.contains("www-authenticate: Basic realm=\"default\""),
        "{response}"
    );
    let status = browser.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch(location.origin + '/ui/action/stop/app1', { method: 'POST', credentials: 'omit' })
           .then((response) => done(response.status), (error) => done(String(error)));",
    );
    assert_eq!(status, json!(401), "a POST from the page without credentials");
    assert_eq!(setup.daemon.state("app1"), "RUNNING");

    // Another site's page (lighttpd serves it from the seed's document root, on another
    // port: another origin) posts a form to the dashboard. The browser sends it with the
    // credentials it holds for the dashboard; the daemon refuses it for its origin.
    let page = format!(
        "<!DOCTYPE html><html><body>\
         <form id=\"csrf\" method=\"POST\" action=\"{}/ui/action/stop/app1\"></form>\
         <script>document.getElementById('csrf').submit();</script></body></html>",
        setup.origin()
    );
    std::fs::write(setup.sandbox.join("seed/apps/csrf.html"), page).unwrap();
    let lighttpd_port = setting(&setup.sandbox.join("seed/lighttpd.conf"), "server.port = ", "\n");
    browser.goto(&format!("http://127.0.0.1:{lighttpd_port}/csrf.html"));
    let mut seen = None;
    let answered = vigil_integration::try_wait_until(TIMEOUT, || {
        let url = browser.runtime.block_on(browser.client().current_url()).ok();
        let text = browser.text("body");
        let done = url.as_ref().is_some_and(|url| url.path() == "/ui/action/stop/app1")
            && text.as_ref().is_some_and(|text| !text.is_empty());
        seen = Some((url, text));
        done
    });
    assert!(answered, "the answer to the cross-origin form; the browser shows {seen:?}");
    let body = seen.and_then(|(_, text)| text).unwrap();
    assert!(body.contains("403 Forbidden"), "{body}");
    assert_eq!(setup.daemon.state("app1"), "RUNNING", "the cross-origin form changed nothing");

    // A script of that site posting with fetch is refused the same way.
    std::fs::write(setup.sandbox.join("seed/apps/site.html"), "<!DOCTYPE html><p>another site</p>")
        .unwrap();
    browser.goto(&format!("http://127.0.0.1:{lighttpd_port}/site.html"));
    let outcome = browser.execute_async(&format!(
        "const done = arguments[arguments.length - 1];
         fetch('{}/ui/action/stop/app1', {{ method: 'POST', mode: 'no-cors', credentials: 'include' }})
           .then((response) => done(response.type), (error) => done(String(error)));",
        setup.origin()
    ));
    assert_eq!(outcome, json!("opaque"), "the browser sent it");
    let (status, _) = http(
        setup.port,
        &format!(
            "POST /ui/action/stop/app1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Origin: http://127.0.0.1:{lighttpd_port}\r\nAuthorization: Basic {auth}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            port = setup.port,
            auth = base64_credentials(),
        ),
    );
    assert_eq!(status, 403);
    assert_eq!(setup.daemon.state("app1"), "RUNNING", "no cross-origin POST changed anything");
}

/// The text between `key` and `end` in a file (a port in a config file, say).
fn setting(path: &Path, key: &str, end: &str) -> u16 {
    let text = std::fs::read_to_string(path).unwrap();
    let rest = text.split(key).nth(1).unwrap_or_else(|| panic!("{key} in {}", path.display()));
    rest.split(end).next().unwrap().trim().trim_matches('"').parse().unwrap()
}

/// `USER:PASSWORD` in base64, for an `Authorization: Basic` header.
fn base64_credentials() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}
