// Supabase edge function: run light agents here, forward heavy ones to the
// Roundhouse agent executor and stream its answer back to the browser.
//
// Deploy:  supabase functions deploy agent-chat
// Secrets: supabase secrets set ROUNDHOUSE_EXECUTOR_URL=https://<executor>.up.railway.app \
//                               RAILWAY_BACKEND_SECRET=<the executor's RAILWAY_BACKEND_SECRET>
//
// The browser calls it with the user's access token:
//   fetch(`${SUPABASE_URL}/functions/v1/agent-chat`, {
//     method: "POST",
//     headers: { Authorization: `Bearer ${session.access_token}`, "Content-Type": "application/json" },
//     body: JSON.stringify({ agentId, messages: [{ role: "user", content: "…" }] }),
//   })
// and reads `agent_chunk` / `agent_done` / `agent_error` server-sent events.

import { createClient } from "jsr:@supabase/supabase-js@2";

const EXECUTOR_URL = Deno.env.get("ROUNDHOUSE_EXECUTOR_URL")!;
const BACKEND_SECRET = Deno.env.get("RAILWAY_BACKEND_SECRET")!;

const cors = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, content-type, apikey, x-client-info",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
};

function error(status: number, message: string): Response {
  return new Response(JSON.stringify({ error: { code: "agent_chat", message } }), {
    status,
    headers: { ...cors, "Content-Type": "application/json" },
  });
}

Deno.serve(async (req) => {
  if (req.method === "OPTIONS") return new Response(null, { headers: cors });
  if (req.method !== "POST") return error(405, "use POST");

  const authorization = req.headers.get("Authorization");
  if (!authorization) return error(401, "sign in first");
  const { agentId, messages } = await req.json().catch(() => ({}));
  if (!agentId || !Array.isArray(messages)) return error(422, "send {agentId, messages}");

  // Read the agent as the user: row-level security decides what they may see.
  const supabase = createClient(Deno.env.get("SUPABASE_URL")!, Deno.env.get("SUPABASE_ANON_KEY")!, {
    global: { headers: { Authorization: authorization } },
  });
  const { data: agent } = await supabase
    .from("agents")
    .select("id, is_heavy, railway_url")
    .eq("id", agentId)
    .maybeSingle();
  if (!agent) return error(404, "agent not found");

  if (!agent.is_heavy) {
    // Light agents: answer here as before (your existing code).
    return error(501, "light agents are answered by your existing edge-function code");
  }

  // Heavy agents: the executor runs them with no time limit. The user's JWT
  // proves who they are; the backend secret proves the call comes from us.
  const executor = agent.railway_url ?? EXECUTOR_URL;
  const upstream = await fetch(`${executor}/api/agent/execute`, {
    method: "POST",
    headers: {
      Authorization: authorization,
      "X-Backend-Secret": BACKEND_SECRET,
      "Content-Type": "application/json",
      Accept: "text/event-stream",
    },
    body: JSON.stringify({ agentId, messages, stream: true }),
  });
  if (!upstream.ok || !upstream.body) {
    // 402 (credits), 404, 429 … pass the executor's answer through.
    return new Response(await upstream.text(), {
      status: upstream.status,
      headers: { ...cors, "Content-Type": "application/json" },
    });
  }

  // Pipe the stream straight through: the first token reaches the browser
  // as soon as the executor sends it. If the browser goes away, the run
  // still finishes on the executor; `X-Run-Id` lets the app fetch it later
  // (GET /api/agent/runs/{runId}) or re-attach to its stream.
  return new Response(upstream.body, {
    headers: {
      ...cors,
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Run-Id": upstream.headers.get("X-Run-Id") ?? "",
      "Access-Control-Expose-Headers": "X-Run-Id",
    },
  });
});
