// The error classes the examples retry on. JavaScript has no built-in
// ConnectionError or TimeoutError; real code would use its HTTP or database
// client's own classes in `when`.

export class ConnectionError extends Error {
  override name = "ConnectionError";
}

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly statusCode: number, message = `HTTP ${statusCode}`) {
    super(message);
  }
}
