//! The HMAC method's matching: which secrets a delivery's stack may be verified with, what a
//! refusal costs and says.

use super::envelope::Envelope;
use super::headers::HmacHeader;
use super::verifier::{mismatch_message, reencoded};
use super::{VerifiedBy, WebhookVerifier};
use crate::contentstack::{Error, ErrorKind};
use crate::crypto::constant_time_eq;

impl WebhookVerifier {
    /// The HMAC that matched, the canonical bytes when the JSON fallback was needed, and the
    /// envelope of the bytes that matched: a secret bound to a stack is tried only on a body
    /// whose signed `api_key` is that stack.
    pub(super) fn check_hmac_signature(
        &self,
        header: &HmacHeader,
        body: &[u8],
    ) -> Result<(VerifiedBy, Option<Vec<u8>>, Envelope), Error> {
        self.match_body(body, |bytes| {
            let envelope = Envelope::parse(bytes).unwrap_or_default();
            self.match_hmac(header, bytes, envelope.api_key.as_deref())
                .map(|by| (by, envelope))
        })
        .map(|((by, envelope), canonical)| (by, canonical, envelope))
        .ok_or_else(|| {
            // The stack of the bytes that were tried: the raw body's, or, when only its
            // re-encoding parses (the fallback on), that one's.
            let stack = Envelope::parse(body)
                .ok()
                .or_else(|| {
                    self.json_fallback
                        .then(|| reencoded(body))
                        .flatten()
                        .and_then(|canonical| Envelope::parse(&canonical).ok())
                })
                .unwrap_or_default()
                .api_key;
            Error::new(
                ErrorKind::SignatureMismatch,
                self.unserved_stack_message(stack.as_deref())
                    .unwrap_or_else(|| {
                        mismatch_message("secret", self.hmac_secrets.len(), self.json_fallback)
                    }),
            )
        })
    }

    /// When no configured secret may verify a delivery of `stack` (every one is bound to
    /// another stack), what the log says: the stack, and how many secrets were not tried. The
    /// answer stays `signature_mismatch`: a code of its own would tell anyone, stack by stack,
    /// which stacks installed the app.
    fn unserved_stack_message(&self, stack: Option<&str>) -> Option<String> {
        let unserved = self.hmac_secrets.iter().all(|bound| !bound.serves(stack));
        if !unserved || self.hmac_secrets.is_empty() {
            return None;
        }
        let count = self.hmac_secrets.len();
        let fix = "bind that stack's secret with WebhookVerifier::with_stack_hmac_secret";
        Some(match stack {
            Some(stack) => {
                // The stack is the sender's text: bounded and quoted, never logged raw.
                let shown: String = stack.chars().take(64).collect();
                format!(
                    "no HMAC secret is bound to stack {shown:?}: {count} secret(s) are bound to other stacks and were not tried; {fix}"
                )
            }
            None => format!(
                "the delivery names no stack (no api_key), and all {count} HMAC secret(s) are bound to stacks: none was tried; {fix}"
            ),
        })
    }

    /// The first secret serving `stack` whose MAC is one of the header's, and which element
    /// it matched.
    fn match_hmac(
        &self,
        header: &HmacHeader,
        body: &[u8],
        stack: Option<&str>,
    ) -> Option<VerifiedBy> {
        let mut tried = 0;
        let matched = self
            .hmac_secrets
            .iter()
            .enumerate()
            .filter(|(_, bound)| bound.serves(stack))
            .find_map(|(secret_index, bound)| {
                tried += 1;
                let mac = bound.secret.mac(&header.t_text, body);
                header
                    .v1
                    .iter()
                    .position(|candidate| constant_time_eq(candidate, &mac))
                    .map(|element| VerifiedBy::Hmac {
                        secret_index,
                        element,
                    })
            });
        // A refusal costs as many MACs whatever the stack (the most any stack has), so that
        // its time does not tell which stacks have secrets here, or how many.
        if matched.is_none()
            && let Some(first) = self.hmac_secrets.first()
        {
            for _ in tried..self.hmac_pad {
                std::hint::black_box(first.secret.mac(&header.t_text, body));
            }
        }
        matched
    }
}
