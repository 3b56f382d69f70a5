//! A plain OAuth provider's user-API answer (GitHub's `/user` and the like),
//! as the web-frontend reads the account's subject from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenvault_web_frontend::provider::user_api_subject;

fuzz_target!(|data: &[u8]| {
    for field in ["id", "sub", "login"] {
        if let Ok(subject) = user_api_subject(data, field) {
            assert!(!subject.is_empty());
            // The callback makes `<provider>:<subject>` an account id.
            let _ = tokenvault_proto::ids::check_account(&format!("github:{subject}"));
        }
    }
});
