"""BasicSR's ``test_pipeline`` flow (parse options -> result folder and logger -> test loaders ->
``build_model`` -> ``model.validation`` per dataset) from BasicSR's own components, with the options
parsed once from ``argv`` (``dist_params`` honoured under torchrun) and the shared preflight run
before ``results/<name>`` is created or an older one archived."""
import logging
from os import path as osp


def test_pipeline(root_path, argv=None):
    import torch
    from basicsr.utils import get_root_logger, get_time_str, make_exp_dirs

    from .options import parse_test_options
    from .preflight import run_preflight
    from .progress import run_log_file

    opt, _ = parse_test_options(root_path, argv)
    warnings = run_preflight(opt, tool='test')  # raises PreflightError: nothing written yet
    torch.backends.cudnn.benchmark = True

    make_exp_dirs(opt)
    log_file = osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    with run_log_file(logger, log_file, opt['rank']):  # this run's own file, also on a second in-process run
        return _test(opt, logger, warnings)


def _test(opt, logger, warnings):
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils import get_env_info
    from basicsr.utils.options import dict2str

    logger.info(get_env_info())
    logger.info(dict2str(opt))
    for line in warnings:
        logger.warning(line)

    test_loaders = []
    for _, dataset_opt in sorted(opt['datasets'].items()):
        test_set = build_dataset(dataset_opt)
        test_loader = build_dataloader(test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None,
                                       seed=opt['manual_seed'])
        logger.info(f"Number of test images in {dataset_opt['name']}: {len(test_set)}")
        test_loaders.append(test_loader)

    model = build_model(opt)
    for test_loader in test_loaders:
        logger.info(f"Testing {test_loader.dataset.opt['name']}...")
        model.validation(test_loader, current_iter=opt['name'], tb_logger=None,
                         save_img=(opt.get('val') or {}).get('save_img', False))
    return model
