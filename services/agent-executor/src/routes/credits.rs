//! `/api/credits`: balances, and grants by the service.

use axum::Json;
use axum::extract::State;
use roundhouse_http::{ApiError, ApiJson, ApiQuery, Caller};

use crate::dto::{CreditsQuery, CreditsView, GrantRequest, acting_user};
use crate::startup::AppState;

/// Largest single grant: far from overflowing a balance.
const MAX_GRANT: i64 = 1_000_000_000_000;

/// `GET /api/credits`: the caller's balance (the service names `?userId=`).
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
