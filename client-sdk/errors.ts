/**
 * The SDK's error: carries the server's HTTP status and error `code` (a code of codes.ts, `HTTP_<status>` when
 * the answer had no modhub error body, or one of CLIENT_ERROR_CODES with status 0), and the server's request id
 * when it sent one (quote it when reporting a 500).
 */
export class ModhubError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId?: string;
  constructor(status: number, code: string, message: string, requestId?: string) {
    super(message);
    this.name = 'ModhubError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}
