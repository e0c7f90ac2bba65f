//! Mail templates per site, rendered with minijinja when the mail is queued (so the outbox row
//! holds exactly what will be sent, even if the templates change before it goes out).
//!
//! minijinja rather than askama: a site owner may replace a mail's wording from configuration
//! without rebuilding bourse, which needs templates loaded at run time; HTML bodies are
//! auto-escaped.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

/// One mail ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("mail template `{name}`: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("no mail template `{0}`")]
    Unknown(String),
}

/// A site's mail templates: `NAME.subject`, `NAME.txt` and optionally `NAME.html`.
#[derive(Debug)]
pub struct MailTemplates {
    env: Environment<'static>,
}

impl Default for MailTemplates {
    fn default() -> Self {
        MailTemplates::new()
    }
}

impl MailTemplates {
    /// The built-in templates for account mails and receipts.
    pub fn new() -> MailTemplates {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut templates = MailTemplates { env };
        for (name, subject, text) in BUILT_IN {
            templates
                .set(name, subject, text, None)
                .expect("built-in mail templates parse");
        }
        templates
    }

    /// Adds or replaces template `name`; a syntax error is reported with the template's name.
    pub fn set(
        &mut self,
        name: &str,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<(), TemplateError> {
        let add = |env: &mut Environment<'static>, suffix: &str, source: &str| {
            env.add_template_owned(format!("{name}.{suffix}"), source.to_owned())
                .map_err(|source| TemplateError::Render {
                    name: format!("{name}.{suffix}"),
                    source,
                })
        };
        add(&mut self.env, "subject", subject)?;
        add(&mut self.env, "txt", text)?;
        if let Some(html) = html {
            add(&mut self.env, "html", html)?;
        } else {
            self.env.remove_template(&format!("{name}.html"));
        }
        Ok(())
    }

    /// Renders mail `name` with `context`.
    pub fn render(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> Result<RenderedMail, TemplateError> {
        let render = |suffix: &str| -> Result<Option<String>, TemplateError> {
            let full = format!("{name}.{suffix}");
            match self.env.get_template(&full) {
                Ok(template) => template
                    .render(context)
                    .map(Some)
                    .map_err(|source| TemplateError::Render { name: full, source }),
                Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => Ok(None),
                Err(source) => Err(TemplateError::Render { name: full, source }),
            }
        };
        let subject = render("subject")?.ok_or_else(|| TemplateError::Unknown(name.into()))?;
        let text = render("txt")?.ok_or_else(|| TemplateError::Unknown(name.into()))?;
        Ok(RenderedMail {
            // A subject is one line, whatever the template or its data say.
            subject: subject.lines().map(str::trim).collect::<Vec<_>>().join(" "),
            text,
            html: render("html")?,
        })
    }
}

const BUILT_IN: [(&str, &str, &str); 6] = [
    (
        "verify_email",
        "Confirm your e-mail address for {{ site_title }}",
        "Welcome to {{ site_title }}.\n\nConfirm your address by opening this link within {{ valid_hours }} hours:\n\n{{ link }}\n\nIf you did not sign up, ignore this mail.\n",
    ),
    (
        "account_exists",
        "Sign-up attempt on {{ site_title }}",
        "Someone tried to sign up on {{ site_title }} with this address, which already has an account.\n\nIf it was you, sign in instead, or reset your password here:\n\n{{ reset_link }}\n",
    ),
    (
        "reset_password",
        "Reset your {{ site_title }} password",
        "Open this link within {{ valid_minutes }} minutes to choose a new password:\n\n{{ link }}\n\nIf you did not ask for it, ignore this mail; your password stays as it is.\n",
    ),
    (
        "password_changed",
        "Your {{ site_title }} password was changed",
        "The password of your {{ site_title }} account was changed and every session was signed out.\n\nIf this was not you, reset your password at once:\n\n{{ reset_link }}\n",
    ),
    (
        "sold_out_refund",
        "Your {{ site_title }} order {{ order_id }} is refunded",
        "We are sorry: the last places sold out while your payment went through, so order {{ order_id }} could not be honoured.\n\nThe full {{ total }} is being refunded to your card.\n",
    ),
    (
        "receipt",
        "Your receipt from {{ site_title }}: order {{ order_id }}",
        "Thank you for your order.\n\nOrder: {{ order_id }}\n{% for line in lines %}{{ line.quantity }} x {{ line.description }}: {{ line.amount }}\n{% endfor %}Total: {{ total }}\n",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_builtin_and_replaced_templates() {
        let mut templates = MailTemplates::new();
        let mail = templates
            .render(
                "verify_email",
                &json!({"site_title": "Courses", "valid_hours": 24, "link": "https://x/v?t=1"}),
            )
            .unwrap();
        assert_eq!(mail.subject, "Confirm your e-mail address for Courses");
        assert!(mail.text.contains("https://x/v?t=1"));
        assert_eq!(mail.html, None);

        templates
            .set(
                "verify_email",
                "Hi\n {{ name }}",
                "t",
                Some("<p>{{ name }}</p>"),
            )
            .unwrap();
        let mail = templates
            .render("verify_email", &json!({"name": "<b>Ann</b>"}))
            .unwrap();
        assert_eq!(
            mail.subject, "Hi <b>Ann</b>",
            "subject is one line, not escaped"
        );
        assert_eq!(
            mail.html.as_deref(),
            Some("<p>&lt;b&gt;Ann&lt;&#x2f;b&gt;</p>")
        );
    }

    #[test]
    fn missing_data_and_unknown_templates_are_errors() {
        let templates = MailTemplates::new();
        let err = templates
            .render("verify_email", &json!({"site_title": "x"}))
            .unwrap_err();
        assert!(err.to_string().contains("verify_email.txt"), "{err}");
        assert!(matches!(
            templates.render("nope", &json!({})),
            Err(TemplateError::Unknown(_))
        ));
        let mut templates = MailTemplates::new();
        assert!(templates.set("broken", "{{ x", "t", None).is_err());
    }
}
