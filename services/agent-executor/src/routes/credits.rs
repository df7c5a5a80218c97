//! `/api/credits`: balances, and grants by the service.

use axum::Json;
use axum::extract::State;
use roundhouse_http::docs::{
    BadRequest, Forbidden, InternalError, PayloadTooLarge, TooManyRequests, Unauthorized,
    Unavailable, Unprocessable, UnsupportedMediaType,
};
use roundhouse_http::{ApiError, ApiJson, ApiQuery, Caller};

use crate::dto::{CreditsQuery, CreditsView, GrantRequest, acting_user};
use crate::startup::AppState;

/// Largest single grant: far from overflowing a balance.
const MAX_GRANT: i64 = 1_000_000_000_000;

/// `GET /api/credits`: the caller's balance (the service names `?userId=`).
#[utoipa::path(
    get,
    path = "/api/credits",
    tag = "credits",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(CreditsQuery),
    responses(
        (status = 200, description = "The balance", body = CreditsView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_credits(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CreditsQuery>,
) -> Result<Json<CreditsView>, ApiError> {
    let user_id = acting_user(&caller, query.user_id)?;
    let balance = state.db.credit_balance(&user_id).await?;
    Ok(Json(CreditsView { user_id, balance }))
}

/// `POST /api/credits/grant`: service only.
#[utoipa::path(
    post,
    path = "/api/credits/grant",
    tag = "credits",
    security(("serviceToken" = [])),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "The new balance", body = CreditsView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn grant_credits(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<GrantRequest>,
) -> Result<Json<CreditsView>, ApiError> {
    if !caller.0.is_service() {
        return Err(ApiError::forbidden("only the service may grant credits"));
    }
    let user_id = acting_user(&caller, Some(request.user_id))?;
    if !(1..=MAX_GRANT).contains(&request.amount) {
        return Err(ApiError::validation(format!(
            "amount: must be between 1 and {MAX_GRANT}"
        )));
    }
    let balance = state.db.grant_credits(&user_id, request.amount).await?;
    tracing::info!(user_id = %user_id, amount = request.amount, balance, "credits granted");
    Ok(Json(CreditsView { user_id, balance }))
}
