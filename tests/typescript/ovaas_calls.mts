// A web client of the API typed by openapi-typescript's output for openapi.yaml (./ovaas.d.ts, generated
// beside this file by tests/test_openapi_client.py) and calling it with openapi-fetch.
// tsc --strict type-checks every field read here against the generated types; node then runs it:
//   node ovaas_calls.mjs <base URL> <JPEG file>
// and it prints one JSON object: what each call answered, for the test to check.
import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import type { components, paths } from "./ovaas.js";

type PoseAnswer = components["schemas"]["PoseAnswer"];
type DetectionAnswer = components["schemas"]["DetectionAnswer"];

const [baseUrl, imagePath] = process.argv.slice(2);
const jpeg = readFileSync(imagePath);
// the JSON answers typed (a 200 also lists the pictures, read with parseAs below)
const api = createClient<paths, "application/json">({ baseUrl });
// the raw form: openapi-typescript types `format: binary` as a string; the bytes go as they are
const raw = { bodySerializer: (body: unknown) => body, headers: { "Content-Type": "application/octet-stream" } };

async function main(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};

  const json = await api.POST("/api/HttpTriggerHumanPose", {
    body: { image: jpeg.toString("base64"), threshold: 0.2 },
  });
  const pose: PoseAnswer | undefined = json.data;
  out.poseJson = { status: json.response.status, people: pose?.people.length, width: pose?.image.width,
                   model: pose?.model.name };

  const rawPose = await api.POST("/api/HttpTriggerHumanPose", {
    params: { query: { threshold: 0.2 } }, body: jpeg as unknown as string, ...raw,
  });
  out.poseRaw = { status: rawPose.response.status, height: rawPose.data?.image.height };

  const boxes = await api.POST("/api/HttpTriggerObjectDetection", {
    params: { query: { threshold: 0.3 } }, body: jpeg as unknown as string, ...raw,
  });
  const found: DetectionAnswer | undefined = boxes.data;
  out.detectionRaw = { status: boxes.response.status, labelIds: found?.detections.map((d) => d.label_id) };

  const picture = await api.POST("/api/HttpTriggerHumanPose", {
    params: { query: { render: true, format: "png" } }, body: { image: jpeg.toString("base64") },
    parseAs: "arrayBuffer",
  });
  const bytes = new Uint8Array(picture.data ?? new ArrayBuffer(0));
  out.picture = { status: picture.response.status, type: picture.response.headers.get("content-type"),
                  magic: Array.from(bytes.slice(1, 4), (b) => String.fromCharCode(b)).join("") };

  const bad = await api.POST("/api/HttpTriggerHumanPose", { body: { image: "!!! not base64 !!!" } });
  out.error400 = { status: bad.response.status, code: bad.error?.error.code };

  const health = await api.GET("/api/health");
  out.health = { status: health.response.status, state: health.data?.status,
                 models: Object.keys(health.data?.models ?? {}).sort() };
  return out;
}

main().then((out) => console.log(JSON.stringify(out)), (err) => {
  console.error(err);
  process.exit(1);
});
