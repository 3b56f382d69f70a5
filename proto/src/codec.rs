//! The codec of every tokenvault RPC: prost's, except for what a decoding
//! failure is called.
//!
//! tonic's prost codec answers bytes that are not the expected message
//! (truncated or garbage protobuf, a string field that is not UTF-8) with
//! `INTERNAL`. The `.proto` keeps `INTERNAL` for integrity failures of
//! stored tokens and promises `INVALID_ARGUMENT` for malformed input, so a
//! server here answers a request it cannot decode with `INVALID_ARGUMENT`.
//! A client that cannot decode a server's reply still gets `INTERNAL`: that
//! is the server's fault, not the caller's. Which side decodes which message
//! is stated per message type ([`Decoded`]), checked at compile time.
//!
//! The decode error's message (prost's description: which field, which wire
//! type) never contains the field's bytes.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::v1;

/// Whether a message is a request (decoded by a server) or a reply.
pub trait Decoded {
    /// What a server calls its caller's message.
    const REQUEST: bool;
}

macro_rules! requests_and_replies {
    ($($request:ident => $reply:ident),* $(,)?) => {
        $(
            impl Decoded for v1::$request {
                const REQUEST: bool = true;
            }
            impl Decoded for v1::$reply {
                const REQUEST: bool = false;
            }
        )*
    };
}

requests_and_replies! {
    StoreRefreshTokenRequest => StoreRefreshTokenResponse,
    DisconnectAccountRequest => DisconnectAccountResponse,
    RecordAccountStatusRequest => RecordAccountStatusResponse,
    RecordRevocationRequest => RecordRevocationResponse,
    ResealRefreshTokenRequest => ResealRefreshTokenResponse,
    ShareAccessTokenRequest => ShareAccessTokenResponse,
    GetAccessTokenRequest => GetAccessTokenResponse,
    GetAccountStatusRequest => GetAccountStatusResponse,
    ListAccountsRequest => ListAccountsResponse,
    WatchAccountEventsRequest => AccountEvent,
}

// Its reply is GetAccessTokenResponse, stated above.
impl Decoded for v1::GetClientAccessTokenRequest {
    const REQUEST: bool = true;
}

/// prost's codec with [`StrictDecoder`]; named by the generated code.
#[derive(Debug, Clone)]
pub struct TokenvaultCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for TokenvaultCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for TokenvaultCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Decoded + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder, answering a request it cannot decode with
/// `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default + Decoded> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            if U::REQUEST {
                Status::invalid_argument(format!(
                    "the request is not a well-formed message: {}",
                    status.message()
                ))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}
