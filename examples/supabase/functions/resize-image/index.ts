// A Roundhouse HTTP handler as a Supabase edge function: the worker POSTs
// each `resize_image` job here, signed per Standard Webhooks.
//
// Worker settings:
//   HTTP_HANDLERS=resize_image=https://<project>.supabase.co/functions/v1/resize-image
//   HTTP_HANDLER_SECRET=whsec_<base64>      (the same value as this function's secret)
//   ROUNDHOUSE_URL=https://<your api>       (so the job can report progress)
// Function secret:
//   supabase secrets set ROUNDHOUSE_HANDLER_SECRET=whsec_<base64>
// Deploy with `--no-verify-jwt`: the signature is the authentication.
//
// Answer 2xx with JSON (the job's result), 4xx to fail the job for good,
// 5xx / 408 / 429 to have it retried with backoff.

const SECRET = Deno.env.get("ROUNDHOUSE_HANDLER_SECRET")!;
const TOLERANCE_SECONDS = 5 * 60;

interface RoundhouseJob {
  jobId: string;
  jobType: string;
  attempt: number;
  userId: string | null;
  payload: { imageUrl?: string; width?: number };
  callback: { url: string | null; token: string };
}

function base64ToBytes(b64: string): Uint8Array {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

// Standard Webhooks: base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)),
// key = base64-decoded part of the secret after `whsec_`; the header holds
// space-separated `v1,<signature>` entries.
async function verify(req: Request, body: string): Promise<boolean> {
  const id = req.headers.get("webhook-id");
  const timestamp = req.headers.get("webhook-timestamp");
  const signatures = req.headers.get("webhook-signature");
  if (!id || !timestamp || !signatures) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const key = await crypto.subtle.importKey(
    "raw",
    base64ToBytes(SECRET.replace(/^whsec_/, "")),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const signed = new TextEncoder().encode(`${id}.${timestamp}.${body}`);
  for (const entry of signatures.split(" ")) {
    const [version, signature] = entry.split(",");
    if (version !== "v1" || !signature) continue;
    // crypto.subtle.verify compares in constant time.
    if (await crypto.subtle.verify("HMAC", key, base64ToBytes(signature), signed)) return true;
  }
  return false;
}

async function progress(job: RoundhouseJob, percent: number, message: string) {
  if (!job.callback.url) return;
  await fetch(job.callback.url, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${job.callback.token}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ progress: percent, message }),
  });
}

Deno.serve(async (req) => {
  const body = await req.text();
  if (!(await verify(req, body))) {
    return new Response("bad signature", { status: 401 }); // 4xx: not retried
  }
  const job: RoundhouseJob = JSON.parse(body);
  const { imageUrl, width = 640 } = job.payload;
  if (!imageUrl) {
    return Response.json({ error: "payload.imageUrl is required" }, { status: 422 });
  }

  await progress(job, 10, "downloading");
  const original = await fetch(imageUrl);
  if (!original.ok) {
    // The source may be back later: 502 makes Roundhouse retry the job.
    return new Response(`source answered ${original.status}`, { status: 502 });
  }
  const bytes = new Uint8Array(await original.arrayBuffer());
  await progress(job, 60, "resizing");
  // … resize `bytes` to `width` and upload it to Storage here …

  return Response.json({ imageUrl, width, originalBytes: bytes.length });
});
