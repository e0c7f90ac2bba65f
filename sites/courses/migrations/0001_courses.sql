-- The courses site: courses, their lessons in order, cohorts (each a stock item of seats, in
-- the commerce `stock_items` table as `cohort:<id>`), enrolments granted by paid orders, and
-- each student's progress.
CREATE TABLE courses (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CHECK (price_minor >= 0)
);

CREATE TABLE lessons (
    id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses (id),
    position BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    preview BIGINT NOT NULL DEFAULT 0,
    attachment TEXT,
    UNIQUE (course_id, position)
);

CREATE TABLE cohorts (
    id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses (id),
    name TEXT NOT NULL,
    seats BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX cohorts_course ON cohorts (course_id);

-- One row per paid order; a refund sets revoked_at. A guest's order has no account: it is
-- matched by the verified address of whoever signs in with it.
CREATE TABLE enrolments (
    order_id TEXT PRIMARY KEY,
    account_id TEXT,
    email TEXT,
    course_id TEXT NOT NULL REFERENCES courses (id),
    cohort_id TEXT NOT NULL REFERENCES cohorts (id),
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX enrolments_account ON enrolments (account_id);
CREATE INDEX enrolments_email ON enrolments (email);

CREATE TABLE lesson_progress (
    account_id TEXT NOT NULL,
    lesson_id TEXT NOT NULL REFERENCES lessons (id),
    done_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, lesson_id)
);
