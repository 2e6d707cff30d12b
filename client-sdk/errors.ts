/** The SDK's error: carries the server's HTTP status and error `code` (the same codes the server documents). */
export class ModhubError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ModhubError';
    this.status = status;
    this.code = code;
  }
}
