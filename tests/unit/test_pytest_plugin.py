"""The pytest plugin, as a user's test suite uses it (run by pytester in a subprocess-free
inner session): apps alive before the test and apps made during it run on memory://, and
each app gets its own connection back afterwards."""

pytest_plugins = ["pytester"]


def test_fixtures_point_apps_at_memory_and_restore_them(pytester):
    pytester.makepyfile(
        test_user="""
        import asyncio

        import pytest

        from streamwork import App
        from streamwork.testing import run_until_idle_async

        module_app = App("redis://127.0.0.1:1/0")  # nothing listens there
        done = []

        @module_app.task(store_result=True)
        def double(n):
            return 2 * n

        def test_an_app_alive_before_the_test(streamwork_memory, run_tasks):
            assert module_app.url == streamwork_memory.url
            handle = double.send(21)
            assert run_tasks().done == 1
            assert handle.result() == 42

        def test_an_app_made_during_the_test(streamwork_memory, run_tasks):
            app = App()
            app.task(name="note")(lambda: done.append(1))
            app.tasks["note"].send()
            with pytest.raises(ValueError, match="found 2 apps"):
                run_tasks()
            run_tasks(app)
            assert done == [1]

        def test_errors_raise_with_their_traceback(streamwork_memory, run_tasks):
            @module_app.task(name="boom")
            def boom():
                raise KeyError("lost")

            module_app.tasks["boom"].send()
            with pytest.raises(KeyError, match="lost"):
                run_tasks()

        def test_the_async_twin(streamwork_memory):
            handle = double.send(5)
            summary = asyncio.run(run_until_idle_async(module_app))
            assert summary.done == 1 and handle.result() == 10

        def test_afterwards_the_app_is_back_on_its_own_url():
            assert module_app.url == "redis://127.0.0.1:1/0"
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=5)


def test_raise_errors_raises_what_ended_a_message_and_real_urls_are_refused(pytester):
    pytester.makepyfile(
        test_user="""
        import os

        import pytest

        from streamwork import App, ConfigurationError

        app = App()
        tries = []

        @app.task(max_retries=3)
        def flaky(n):
            tries.append(n)
            if tries.count(n) < 3:
                raise ConnectionError(f"try {tries.count(n)} of {n}")

        @app.task(max_retries=1)
        def hopeless():
            raise LookupError("never works")

        def test_a_retry_that_succeeds_does_not_raise(streamwork_memory, run_tasks):
            flaky.send(7)
            summary = run_tasks()
            assert (summary.done, summary.retried) == (1, 2)
            assert [str(e) for e in summary.errors] == ["try 1 of 7", "try 2 of 7"]
            assert summary.failures == []

        def test_what_ended_a_message_is_raised_once_idle(streamwork_memory, run_tasks):
            hopeless.send()
            flaky.send(8)
            with pytest.raises(LookupError, match="never works"):
                run_tasks()
            assert tries.count(8) == 3  # the run went on to idle first

        def test_an_app_with_a_real_url_fails_at_once(streamwork_memory, run_tasks):
            other = App("redis://127.0.0.1:1/0")  # App(os.environ["REDIS_URL"]), say
            job = other.task(name="job")(lambda: None)
            with pytest.raises(ConfigurationError, match=r"streamwork_memory\\.use\\(app\\)"):
                job.send()
            streamwork_memory.use(other)
            job.send()
            assert run_tasks(other).done == 1
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=3)
