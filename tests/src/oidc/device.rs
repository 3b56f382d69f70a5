//! Playing the person on another device in the device authorization grant
//! (RFC 8628): open the server's verification page, enter the user code,
//! sign in on devInteractions' login form and allow (or cancel), with a
//! fresh cookie store each time (a remembered session would skip the
//! login). Redirects are followed by hand, as the server sends them.

use anyhow::{Context, anyhow, bail, ensure};

use super::{Decision, OidcServer, http_client};

impl OidcServer {
    /// Enters `user_code` at the verification page as `account` and allows
    /// or cancels.
    pub async fn enter_user_code(
        &self,
        user_code: &str,
        account: &str,
        decision: Decision,
    ) -> anyhow::Result<()> {
        let http = http_client(true)?;
        let page = http.get(self.url("/device")).send().await?.text().await?;
        let xsrf = between(&page, r#"name="xsrf" value=""#, "\"")
            .context("the verification page has no xsrf field")?;
        let entered = http
            .post(self.url("/device"))
            .form(&[("xsrf", xsrf), ("user_code", user_code), ("confirm", "yes")])
            .send()
            .await?;
        let login = self.absolute(&location(&entered)?);
        if decision == Decision::Deny {
            let aborted = http.get(format!("{login}/abort")).send().await?;
            let page = http
                .get(self.absolute(&location(&aborted)?))
                .send()
                .await?
                .text()
                .await?;
            ensure!(
                page.contains("interrupted"),
                "the sign-in was not cancelled"
            );
            return Ok(());
        }
        let signed_in = http
            .post(&login)
            .form(&[("prompt", "login"), ("login", account)])
            .send()
            .await?;
        let resumed = http
            .get(self.absolute(&location(&signed_in)?))
            .send()
            .await?;
        let consent = self.absolute(&location(&resumed)?);
        let allowed = http
            .post(&consent)
            .form(&[("prompt", "consent")])
            .send()
            .await?;
        let page = http
            .get(self.absolute(&location(&allowed)?))
            .send()
            .await?
            .text()
            .await?;
        if !page.contains("Sign-in Success") {
            bail!("the device sign-in did not succeed");
        }
        Ok(())
    }

    /// Device authorization answers announce `interval` seconds between
    /// polls (0: none, so clients wait RFC 8628's 5 s) and new device codes
    /// live `expires_in` seconds.
    pub async fn set_device_flow(&self, interval: u64, expires_in: u64) -> anyhow::Result<()> {
        self.hook(
            "/test/device-flow",
            &[
                ("interval", interval.to_string()),
                ("expires_in", expires_in.to_string()),
            ],
        )
        .await
        .map(drop)
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }
}

fn location(response: &reqwest::Response) -> anyhow::Result<String> {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "{} answered {} without a Location",
                response.url(),
                response.status()
            )
        })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}
