// Node.js handlers for lambda-admission's tests, run by AWS's aws-lambda-ric.

// Returns the event; with "sleep_ms" waits first, with "raise" fails.
exports.echo = async (event) => {
  if (event && typeof event === "object") {
    if (event.sleep_ms) {
      await new Promise((resolve) => setTimeout(resolve, event.sleep_ms));
    }
    if (event.raise) {
      throw new Error(event.raise);
    }
  }
  return event;
};

// Streams the event's "chunks" as an HTTP response (a RESPONSE_STREAM Function URL).
exports.stream = awslambda.streamifyResponse(async (event, responseStream) => {
  const http = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200,
    headers: { "content-type": "text/plain" },
  });
  for (const chunk of event.chunks || []) {
    http.write(chunk);
  }
  http.end();
});
