//! The gRPC codec of every Mandate service: prost's, except that a message that does not
//! decode is the sender's error (`INVALID_ARGUMENT`, with an `ErrorInfo` reason of
//! `INVALID_ARGUMENT` in the `mandate.dev` domain), not the server's (`INTERNAL`, which is
//! what tonic's prost codec answers).

use std::collections::HashMap;
use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo` domain of every Mandate error.
pub const ERROR_DOMAIN: &str = "mandate.dev";

/// A prost codec whose decode failures are `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy)]
pub struct StrictCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec(PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(PhantomData)
    }
}

/// Decodes one message; a failure names the message type and why.
#[derive(Debug, Clone, Copy)]
pub struct StrictDecoder<U>(PhantomData<U>);

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::with_error_details(
                tonic::Code::InvalidArgument,
                format!("the message does not decode as protobuf: {e}"),
                ErrorDetails::with_error_info(
                    "INVALID_ARGUMENT",
                    ERROR_DOMAIN,
                    HashMap::<String, String>::new(),
                ),
            )
        })
    }
}
